"""Package openfga brings OpenFGA models and their tests over: policies and validation files.

``convert_model_file`` reads a model (DSL schema 1.1, or JSON) and prints the
equivalent policy (policy.py says how each construct maps); ``convert_store_file``
turns a ``.fga.yaml`` store file into SpiceDB validation files that
``policyd validate`` runs. What has no equivalent is refused with
ConversionError, naming the file and line. README "From OpenFGA" lists the
semantic differences a migrating team must know.
"""

from __future__ import annotations

from policyd.openfga.model import Model, parse_dsl, parse_json
from policyd.openfga.policy import ConvertedModel, to_policy
from policyd.openfga.storefile import convert_model_file, convert_store_file, load_model

__all__ = [
    "ConvertedModel",
    "Model",
    "convert_model_file",
    "convert_store_file",
    "load_model",
    "parse_dsl",
    "parse_json",
    "to_policy",
]
