"""Read models that services keep of another service's records, fed by its events.

Updates of one record can arrive out of order (a `person.registered` and a `person.updated`
travel on different queues), so each copy keeps the `version` it was built from and an older
version never overwrites a newer one.
"""

from __future__ import annotations

from typing import Any

from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError


def remember_newer(collection: Collection, document: dict[str, Any]) -> bool:
    """Store `document` (with `_id` and `version`) unless a newer version is there already."""
    # Insert first: a first sighting, the common case, then costs one statement, not two.
    try:
        collection.insert_one(document)
        return True
    except DuplicateKeyError:
        pass
    stored = collection.find_one({"_id": document["_id"]}, {"version": 1})
    if stored is None:  # removed meanwhile
        return remember_newer(collection, document)
    if stored.get("version", 1) >= document["version"]:
        return False
    # Only over what was read (a copy from before versions has none: null matches it).
    result = collection.replace_one({"_id": document["_id"], "version": stored.get("version")}, document)
    return result.matched_count == 1 or remember_newer(collection, document)
