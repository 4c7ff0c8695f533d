"""Enough of kustomize to render deploy/k8s without a kubectl binary: resources (files and
directories), namespace, labels (metadata only), replicas, images and strategic-merge patches
(containers merged by name). tests/integration/ops/test_k8s.py checks it against `kubectl kustomize` where
kubectl is installed."""

import copy
from pathlib import Path

import yaml


def render(directory: Path) -> list[dict]:
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    objects: list[dict] = []
    for resource in spec.get("resources", []):
        path = directory / resource
        objects += render(path) if path.is_dir() else [d for d in yaml.safe_load_all(path.read_text()) if d]
    for label in spec.get("labels", []):
        for obj in objects:
            obj.setdefault("metadata", {}).setdefault("labels", {}).update(label["pairs"])
    for patch in spec.get("patches", []):
        for change in yaml.safe_load_all((directory / patch["path"]).read_text()):
            merge(find(objects, change["kind"], change["metadata"]["name"]), change)
    for replicas in spec.get("replicas", []):
        find(objects, "Deployment", replicas["name"])["spec"]["replicas"] = replicas["count"]
    for image in spec.get("images", []):
        for obj in objects:
            for container in obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
                name, _, tag = container["image"].partition(":")
                if name == image["name"]:
                    container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
    if "namespace" in spec:
        for obj in objects:
            obj["metadata"]["namespace"] = spec["namespace"]
    return objects


def find(objects: list[dict], kind: str, name: str) -> dict:
    [obj] = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def merge(target: dict, change: dict) -> None:
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        elif key == "containers" and isinstance(value, list):
            by_name = {c["name"]: c for c in target.setdefault(key, [])}
            for container in value:
                if container["name"] in by_name:
                    merge(by_name[container["name"]], container)
                else:
                    target[key].append(copy.deepcopy(container))
        else:
            target[key] = copy.deepcopy(value)
