#!/usr/bin/env python3
"""Validates rendered Kubernetes manifests offline and prints them as JSON.

    scripts/k8s-validate.py --kubernetes-version 1.29.0 [--kubernetes-version ...] FILE

FILE holds `helm template` output (several YAML documents). Every object of a built-in kind
is validated, strictly (unknown fields are errors), against the Kubernetes JSON schemas that
the `kubernetes-validate` package bundles, for each version given. Objects of kinds with no
bundled schema (KEDA's ScaledObject and TriggerAuthentication, the Prometheus Operator's
ServiceMonitor) are listed on stderr and left to the chart's test, which checks their fields.

Prints on stdout one JSON array of the objects, in order (the Rust test reads it: no YAML
crate needed there). Exit status: 0 valid, 1 an object is invalid, 2 usage or unreadable.
Needs `kubernetes-validate` (pip install kubernetes-validate), which brings PyYAML.
"""

import argparse
import json
import sys

try:
    import kubernetes_validate
    import yaml
except ImportError as e:  # the Rust test reads this line to tell "missing" from "invalid"
    print(f"k8s-validate: missing Python package: {e.name} (pip install kubernetes-validate)",
          file=sys.stderr)
    sys.exit(3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubernetes-version", action="append", required=True)
    parser.add_argument("file")
    args = parser.parse_args()
    try:
        with open(args.file, encoding="utf-8") as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
    except (OSError, yaml.YAMLError) as e:
        print(f"k8s-validate: {args.file}: {e}", file=sys.stderr)
        return 2
    failed = False
    for doc in docs:
        name = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
        for version in args.kubernetes_version:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                print(f"k8s-validate: {name} ({doc.get('apiVersion')}): no bundled schema, "
                      "fields checked by the chart's test", file=sys.stderr)
                break
            except kubernetes_validate.ValidationError as e:
                path = "/".join(str(p) for p in e.absolute_path)
                print(f"k8s-validate: {name} invalid for Kubernetes {version} at "
                      f"{path or '(top)'}: {e.message}", file=sys.stderr)
                failed = True
    json.dump(docs, sys.stdout)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
