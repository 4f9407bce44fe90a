"""AdapterHub (``adapters``) private API used by Multi-BERT (checked against adapters 1.3 by
``tests/test_upstream_internals.py``).

- ``adapters.heads.ClassificationHead.forward(outputs, cls_output, attention_mask, return_dict, **kwargs)``: the
  head pools ``[CLS]`` itself when ``cls_output`` is ``None``; :func:`mean_pooled_head_class` hands it the mean of
  the token states instead.
- ``adapters.methods.prefix_tuning.PrefixTuningPool.prefix_tunings[name][key]``: the prefix modules of one
  adapter, each with ``eject()`` (the prefix its reparametrization MLP computes) and, once flat,
  ``control_trans`` (the prefix itself); :func:`eject_prefix_tuning` turns one into the other.
- ``AdapterTrainer._save`` / ``_load_from_checkpoint`` / ``_load_best_model`` (transformers' ``Trainer`` hooks that
  ``AdapterTrainer`` overrides): ``MultiBertAdapterTrainer`` overrides them again so a checkpoint holds one
  adapter and its head, in safetensors.
"""

from __future__ import annotations

#: (module, attribute) pairs this module and ``MultiBertAdapterTrainer`` rely on, for the upgrade test.
PRIVATE_API = (
    ("adapters.heads", "ClassificationHead.forward"),
    ("adapters.methods.prefix_tuning", "PrefixTuningPool"),
    ("adapters.methods.prefix_tuning", "PrefixTuning.eject"),
    ("adapters", "AdapterTrainer._save"),
    ("adapters", "AdapterTrainer._load_from_checkpoint"),
    ("adapters", "AdapterTrainer._load_best_model"),
)


def mean_pooled_head_class(head_type: str):
    """An AdapterHub ``ClassificationHead`` subclass that classifies the mean of the (unpadded) token states.

    ``head_type`` is written into the head's ``config`` (and so its ``head_config.json``): register the class
    under that name with ``model.register_custom_head`` and every reload builds the same head.
    """
    from adapters.heads import ClassificationHead

    class MeanPooledClassificationHead(ClassificationHead):
        def __init__(self, model, head_name, **kwargs):
            super().__init__(model, head_name, **kwargs)
            self.config["head_type"] = head_type

        def forward(self, outputs, cls_output=None, attention_mask=None, return_dict=False, **kwargs):
            if cls_output is None:
                hidden = outputs[0]
                if attention_mask is None:
                    cls_output = hidden.mean(dim=1)
                else:
                    mask = attention_mask[:, : hidden.shape[1]].unsqueeze(-1).to(hidden.dtype)
                    cls_output = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
            return super().forward(outputs, cls_output, attention_mask, return_dict, **kwargs)

    return MeanPooledClassificationHead


def _prefix_pools(model, name: str) -> list:
    from adapters.methods.prefix_tuning import PrefixTuningPool

    return [m for m in model.modules() if isinstance(m, PrefixTuningPool) and name in m.prefix_tunings]


def eject_prefix_tuning(model, name: str, config) -> bool:
    """Replace prefix adapter ``name``'s reparametrization MLP by the prefix it computes (``config.flat``).

    The adapter is re-added flat with the same configuration otherwise, and its prefixes copied in: the model's
    output is unchanged. Returns ``False`` (nothing done) when the pools do not line up after re-adding.
    """
    import torch

    pools = _prefix_pools(model, name)
    with torch.no_grad():
        flat = [{key: prefix.eject().detach().clone() for key, prefix in pool.prefix_tunings[name].items()}
                for pool in pools]
    model.delete_adapter(name)
    model.add_adapter(name, config=config.replace(flat=True))
    pools = _prefix_pools(model, name)
    if len(pools) != len(flat):
        return False
    with torch.no_grad():
        for pool, weights in zip(pools, flat):
            for key, prefix in pool.prefix_tunings[name].items():
                prefix.control_trans.copy_(weights[key])
    return True


__all__ = ["PRIVATE_API", "eject_prefix_tuning", "mean_pooled_head_class"]
