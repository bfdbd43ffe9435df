"""Validates Prometheus Operator resources against the operator's CRD schemas.

Usage: validate_crds.py FILE...

Every document whose kind is PodMonitor, ServiceMonitor or PrometheusRule
(monitoring.coreos.com/v1) is checked with the models that the PyPI package
cloudcoil.models.prometheus_operator generates from the operator's CRDs:
types, required fields and enums by pydantic, and, as kubeconform's
--strict does, no field the schema does not know (pydantic alone ignores
them). Other kinds are left to kubernetes-validate. Exits 1 on any problem,
printing file, resource and field path.
"""

import sys
import types
import typing

import pydantic
import yaml
from cloudcoil.models.prometheus_operator import v1

KINDS = {
    "PodMonitor": v1.PodMonitor,
    "ServiceMonitor": v1.ServiceMonitor,
    "PrometheusRule": v1.PrometheusRule,
}


def inner_types(annotation):
    """The types an annotation can hold: Optional/Union/List/Dict unwrapped."""
    origin = typing.get_origin(annotation)
    if origin is None:
        return [annotation]
    if origin is typing.Annotated:
        return inner_types(typing.get_args(annotation)[0])
    out = []
    for arg in typing.get_args(annotation):
        out.extend(inner_types(arg))
    return out


def is_model(t):
    return isinstance(t, type) and issubclass(t, pydantic.BaseModel)


def unknown_fields(model, data, path):
    """Paths of keys in `data` that `model` has no field for."""
    if not isinstance(data, dict):
        return []
    by_key = {}
    for name, field in model.model_fields.items():
        by_key[name] = field
        if field.alias:
            by_key[field.alias] = field
    errors = []
    for key, value in data.items():
        field = by_key.get(key)
        if field is None:
            errors.append(f"{path}.{key}: unknown field")
            continue
        errors.extend(check_value(field.annotation, value, f"{path}.{key}"))
    return errors


def check_value(annotation, value, path):
    models = [t for t in inner_types(annotation) if is_model(t)]
    if not models:
        return []
    if isinstance(value, list):
        errors = []
        for i, item in enumerate(value):
            errors.extend(check_value(annotation, item, f"{path}[{i}]"))
        return errors
    if isinstance(value, dict):
        # Several candidate models: the value is fine if one knows all its keys.
        results = [unknown_fields(m, value, path) for m in models]
        return min(results, key=len)
    return []


def main(files):
    problems = []
    checked = 0
    for f in files:
        with open(f) as fh:
            docs = [d for d in yaml.safe_load_all(fh) if d]
        for d in docs:
            model = KINDS.get(d.get("kind"))
            if model is None:
                continue
            where = f"{f}: {d['kind']}/{d.get('metadata', {}).get('name')}"
            if d.get("apiVersion") != "monitoring.coreos.com/v1":
                problems.append(f"{where}: apiVersion {d.get('apiVersion')}")
            try:
                model.model_validate(d)
            except pydantic.ValidationError as e:
                problems.append(f"{where}: {e}")
            problems.extend(f"{where}: {p}" for p in unknown_fields(model, d, ""))
            checked += 1
    for p in problems:
        print(p)
    print(f"{checked} Prometheus Operator resource(s) checked, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
