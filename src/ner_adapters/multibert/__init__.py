"""Multi-BERT (Abed Azad and Beigy): one frozen BERT core, per-domain AdapterHub adapters, per-scheme heads
and a document-level domain router.

```python
from ner_adapters.multibert import MultiBertModel, DomainRouter

mbert = MultiBertModel.load("outputs/multibert/default/model")
mbert.predict(["Mary flew to Paris ."], domain="email")       # [[TaggedEntity(entity_group='PER', ...)]]
DomainRouter(mbert).tag("Mary flew to Paris. She loved it.")  # domain, probability, entities per sentence
```

Training and evaluation: ``recipes/train_multibert.py recipes/multibert/default.yaml``.
"""

from .config import ConfigError, MultiBertConfig, parse_config
from .domains import DomainData, load_domains
from .model import AdapterSpec, MultiBertError, MultiBertModel
from .router import DomainRouter, RoutedDocument, RouteDecision, make_groups, router_accuracy, train_router
from .tokenization import TaggedEntity
from .training import train_adapter, train_full, train_multibert

__all__ = [
    "AdapterSpec",
    "ConfigError",
    "DomainData",
    "DomainRouter",
    "MultiBertConfig",
    "MultiBertError",
    "MultiBertModel",
    "RouteDecision",
    "RoutedDocument",
    "TaggedEntity",
    "load_domains",
    "make_groups",
    "parse_config",
    "router_accuracy",
    "train_adapter",
    "train_full",
    "train_multibert",
    "train_router",
]
