"""The verbs on objects: get, list, create, update, patch, delete.

``Api`` implements kube-apiserver's object lifecycle over the ``Store``:
metadata (uid, creationTimestamp, generation bumped on spec changes only,
resourceVersion preconditions), status-subresource rules, finalizers and
``deletionTimestamp``, namespace termination (its objects go first; creating in
a terminating namespace is Forbidden), CRDs (served on create, their objects
removed on delete) and no-op updates that keep the resourceVersion.  No HTTP
here: handlers parse requests and call these methods.
"""

from __future__ import annotations

import base64
import bisect
import copy
import datetime
import json
import random
import uuid
from typing import Any

from firewall_lab.apiserver import admission, errors, patch, selectors
from firewall_lab.apiserver.resources import Registry, ResourceType
from firewall_lab.apiserver.storage import Store

Json = dict[str, Any]
Keys = list[tuple[str, str]]  # (namespace, name), sorted
CRD_KEY = "apiextensions.k8s.io/customresourcedefinitions"
NS_KEY = "/namespaces"
_SUFFIX_CHARS = "bcdfghjklmnpqrstvwxz2456789"
_SERVER_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds")


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _spec_part(rtype: ResourceType, obj: Json) -> Json:
    """What ``generation`` tracks: everything but metadata (and status when separate)."""
    skip = {"metadata", "apiVersion", "kind"} | ({"status"} if rtype.status_subresource else set())
    return {k: v for k, v in obj.items() if k not in skip}


def _encode_continue(rv: int, start: tuple[str, str]) -> str:
    raw = json.dumps({"rv": rv, "start": list(start)}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_continue(token: str) -> tuple[int, tuple[str, str]]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        return int(data["rv"]), (str(data["start"][0]), str(data["start"][1]))
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise errors.BadRequest(f"invalid continue token: {errors.shown(token)}") from exc


class Api:
    """Object semantics over a store and a registry (one event-loop thread)."""

    def __init__(self, store: Store, registry: Registry) -> None:
        self.store = store
        self.registry = registry
        self._order: dict[str, tuple[int, Keys]] = {}
        for crd in store.items(CRD_KEY):
            registry.put_crd(crd)

    @staticmethod
    def present(rtype: ResourceType, obj: Json) -> Json:
        out = copy.deepcopy(obj)
        out["apiVersion"] = rtype.api_version
        out["kind"] = rtype.kind
        return out

    def _stored(self, rtype: ResourceType, namespace: str, name: str) -> Json:
        obj = self.store.get(rtype.key, namespace, name)
        if obj is None:
            raise errors.NotFound.of(plural=rtype.plural, group=rtype.group, name=name)
        return obj

    def get(self, rtype: ResourceType, namespace: str, name: str) -> Json:
        return self.present(rtype, self._stored(rtype, namespace, name))

    def list(
        self, rtype: ResourceType, flt: selectors.Filter, *, limit: int = 0, cont: str = ""
    ) -> Json:
        """One page: objects by (namespace, name) after the continue token's key."""
        rv, start = _decode_continue(cont) if cont else (self.store.rv, ("", ""))
        keys = self._ordered(rtype.key)
        first, end = 0, len(keys)
        if flt.namespace is not None:  # a namespace is one contiguous run of keys
            first = bisect.bisect_left(keys, (flt.namespace, ""))
            end = bisect.bisect_left(keys, (flt.namespace + "\0", ""))
        if cont:
            first = max(first, bisect.bisect_right(keys, start))
        bucket = self.store.objects.get(rtype.key, {})
        matching: list[Json] = []
        at = first
        while at < end and not (limit and len(matching) > limit):
            obj = bucket.get(keys[at])
            if obj is not None and flt.matches(obj):
                matching.append(obj)
            at += 1
        meta: Json = {"resourceVersion": str(rv)}
        if limit and len(matching) > limit:
            last = matching[limit - 1]["metadata"]
            meta["continue"] = _encode_continue(rv, (last.get("namespace", ""), last["name"]))
            rest = end - first - limit if not (flt.labels or flt.fields) else None
            if rest is None:
                rest = 1 + sum(flt.matches(bucket.get(k) or {}) for k in keys[at:end])
            meta["remainingItemCount"] = rest
            matching = matching[:limit]
        return {
            "kind": f"{rtype.kind}List",
            "apiVersion": rtype.api_version,
            "metadata": meta,
            # shallow copies: a list is serialized at once, nothing mutates its items
            # (a deep copy of 100k pods costs the double seconds per LIST)
            "items": [{**o, "apiVersion": rtype.api_version, "kind": rtype.kind} for o in matching],
        }

    def _ordered(self, key: str) -> Keys:
        """The keys of a storage key's objects, sorted; re-sorted only after
        objects came or went (a paged LIST of 100k objects would otherwise
        sort them once per page)."""
        membership = self.store.membership.get(key, 0)
        cached = self._order.get(key)
        if cached is None or cached[0] != membership:
            cached = (membership, sorted(self.store.objects.get(key, {})))
            self._order[key] = cached
        return cached[1]

    def _check_namespace(self, rtype: ResourceType, namespace: str) -> None:
        if not rtype.namespaced:
            return
        ns = self.store.get(NS_KEY, "", namespace)
        if ns is None:
            raise errors.NotFound.of(plural="namespaces", group="", name=namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise errors.Forbidden(
                f"{rtype.plural} is forbidden: unable to create new content in namespace "
                f"{namespace} because it is being terminated",
                details={"kind": rtype.plural, "causes": [{"reason": "NamespaceTerminating"}]},
            )

    def create(
        self, rtype: ResourceType, namespace: str, body: Json, *, strict: bool = False
    ) -> Json:
        admission.check_kind(rtype, body)
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if rtype.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise errors.BadRequest(
                    "the namespace of the provided object does not match "
                    "the namespace sent on the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(random.choices(_SUFFIX_CHARS, k=5))
        admission.check_name(rtype, meta.get("name", ""))
        self._check_namespace(rtype, namespace)
        if self.store.get(rtype.key, meta.get("namespace", ""), meta["name"]) is not None:
            raise errors.AlreadyExists.of(plural=rtype.plural, group=rtype.group, name=meta["name"])
        for field in ("resourceVersion", "deletionTimestamp", "selfLink", "managedFields"):
            meta.pop(field, None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
        if rtype.status_subresource and rtype.is_crd:
            obj.pop("status", None)
        admission.prepare(rtype, obj, None, strict=strict)
        self._after_put(self.store.put(rtype.key, obj))
        return self.present(rtype, obj)

    def update(
        self,
        rtype: ResourceType,
        namespace: str,
        name: str,
        body: Json,
        *,
        subresource: str = "",
        strict: bool = False,
    ) -> Json:
        admission.check_kind(rtype, body)
        old = self._stored(rtype, namespace, name)
        new = copy.deepcopy(body)
        meta = new.setdefault("metadata", {})
        if meta.get("name", name) != name:
            raise errors.BadRequest(
                f"the name of the object ({meta.get('name')}) does not "
                f"match the name on the URL ({name})"
            )
        wanted = meta.get("resourceVersion")
        if wanted and wanted != old["metadata"]["resourceVersion"]:
            raise errors.Conflict.stale(plural=rtype.plural, group=rtype.group, name=name)
        return self._commit(rtype, old, new, subresource=subresource, strict=strict)

    def _commit(
        self, rtype: ResourceType, old: Json, new: Json, *, subresource: str, strict: bool
    ) -> Json:
        old_meta, meta = old["metadata"], new.setdefault("metadata", {})
        if subresource == "status":
            status = new.get("status")
            new = copy.deepcopy(old)
            new["status"] = status
            meta = new["metadata"]
        elif rtype.status_subresource:
            new.pop("status", None)
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
        for field in ("name", "namespace", "generation", *_SERVER_META):
            meta.pop(field, None)
            if field in old_meta:
                meta[field] = old_meta[field]
        meta.pop("managedFields", None)
        if old_meta.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise errors.Invalid.of(
                    kind=rtype.kind,
                    group=rtype.group,
                    name=meta["name"],
                    causes=[
                        errors.cause(
                            "metadata.finalizers",
                            "Forbidden: no new finalizers "
                            "can be added if the object is being deleted",
                            "FieldValueForbidden",
                        )
                    ],
                )
        admission.prepare(rtype, new, old, strict=strict)
        if _spec_part(rtype, new) != _spec_part(rtype, old):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        meta["resourceVersion"] = old_meta["resourceVersion"]
        if new == old:
            return self.present(rtype, old)  # a no-op keeps the resourceVersion
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self.present(rtype, self._remove(rtype.key, old))
        self._after_put(self.store.put(rtype.key, new))
        return self.present(rtype, new)

    def patch(
        self,
        rtype: ResourceType,
        namespace: str,
        name: str,
        *,
        patch_type: str,
        body: Any,
        subresource: str = "",
        strict: bool = False,
    ) -> Json:
        old = self.store.get(rtype.key, namespace, name)
        if old is None and patch_type == "apply":
            body.setdefault("metadata", {})["name"] = name
            return self.create(rtype, namespace, body, strict=strict)
        current = self.get(rtype, namespace, name)
        if patch_type == "json":
            new = patch.json_patch(current, body)
        elif patch_type == "strategic":
            if rtype.is_crd:
                raise errors.UnsupportedMediaType(
                    "the body of the request was in an unknown format - accepted media types "
                    "include: application/json-patch+json, application/merge-patch+json, "
                    "application/apply-patch+yaml"
                )
            new = patch.strategic_merge_patch(current, body)
        else:
            new = patch.merge_patch(current, body)
        wanted = new.get("metadata", {}).get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise errors.Conflict.stale(plural=rtype.plural, group=rtype.group, name=name)
        admission.check_kind(rtype, new)
        return self._commit(
            rtype, self._stored(rtype, namespace, name), new, subresource=subresource, strict=strict
        )

    def delete(
        self, rtype: ResourceType, namespace: str, name: str, options: Json | None = None
    ) -> Json:
        old = self._stored(rtype, namespace, name)
        pre = (options or {}).get("preconditions") or {}
        meta = old["metadata"]
        for field in ("uid", "resourceVersion"):
            if pre.get(field) and pre[field] != meta.get(field):
                raise errors.Conflict(
                    f"Precondition failed: {field} in precondition: "
                    f"{pre[field]}, {field} in object meta: {meta.get(field)}"
                )
        if rtype.key == NS_KEY:
            return self.present(rtype, self._terminate_namespace(old))
        if not meta.get("finalizers"):
            return self.present(rtype, self._remove(rtype.key, old))
        if meta.get("deletionTimestamp"):
            return self.present(rtype, old)
        new = copy.deepcopy(old)
        new["metadata"].update(deletionTimestamp=now(), deletionGracePeriodSeconds=0)
        new["metadata"]["generation"] = int(meta.get("generation", 1)) + 1
        return self.present(rtype, self.store.put(rtype.key, new))

    def delete_collection(self, rtype: ResourceType, flt: selectors.Filter) -> Json:
        listed = self.list(rtype, flt)
        for obj in listed["items"]:
            meta = obj["metadata"]
            self.delete(rtype, meta.get("namespace", ""), meta["name"])
        return listed

    def _terminate_namespace(self, ns: Json) -> Json:
        name = ns["metadata"]["name"]
        if not ns["metadata"].get("deletionTimestamp"):
            new = copy.deepcopy(ns)
            new["metadata"]["deletionTimestamp"] = now()
            new.setdefault("status", {})["phase"] = "Terminating"
            self.store.put(NS_KEY, new)
        for rtype in self.registry.all():
            if rtype.namespaced:
                for obj in self.store.items(rtype.key):
                    if obj["metadata"].get("namespace") == name:
                        self.delete(rtype, name, obj["metadata"]["name"])
        self._finish_namespace(name)
        return self.store.get(NS_KEY, "", name) or self.store.remove(NS_KEY, ns)

    def _finish_namespace(self, name: str) -> None:
        ns = self.store.get(NS_KEY, "", name)
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return
        if ns["metadata"].get("finalizers"):
            return
        for bucket in self.store.objects.values():
            if any(key[0] == name for key in bucket):
                return
        self.store.remove(NS_KEY, ns)

    def _remove(self, key: str, obj: Json) -> Json:
        gone = self.store.remove(key, obj)
        if key == CRD_KEY:
            for rtype in self.registry.drop_crd(obj["metadata"]["name"])[:1]:
                for item in self.store.items(rtype.key):
                    self.store.remove(rtype.key, item)
        namespace = obj["metadata"].get("namespace")
        if namespace:
            self._finish_namespace(namespace)
        return gone

    def _after_put(self, obj: Json) -> None:
        if obj.get("kind") == "CustomResourceDefinition" and not obj["metadata"].get(
            "deletionTimestamp"
        ):
            self.registry.put_crd(obj)
