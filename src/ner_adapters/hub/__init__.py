"""Hub delivery: repo layouts of the trained artifacts, model cards, idempotent pushes.

- :mod:`ner_adapters.hub.layout`: one repo per artifact (Multi-BERT domain adapter with its head, the domain
  classifier, CLLMFS LoRA adapter), exported to folders and resolved back from repo ids or folders;
- :mod:`ner_adapters.hub.model_card`: model cards rendered from the templates in ``hub/card_templates/`` with the
  run's measured metrics;
- :mod:`ner_adapters.hub.push`: one atomic commit per repo, skipped when nothing changed.

Loading goes through :func:`ner_adapters.pipeline`. Importing this package stays light (no torch, no Hub
client): the submodules import what they need.
"""
