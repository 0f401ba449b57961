"""Domain errors that cross the RPC boundary unchanged.

nameko serialises an exception raised in a service; registering the class with
`deserialize_to_instance` makes the gateway's proxy raise the same class with the same arguments,
so the gateway maps errors to HTTP by type instead of by parsing strings.
"""

from __future__ import annotations

from nameko.exceptions import deserialize_to_instance


@deserialize_to_instance
class NotFound(Exception):
    def __init__(self, resource: str, identifier: str) -> None:
        super().__init__(resource, identifier)
        self.resource = resource
        self.identifier = identifier

    def __str__(self) -> str:
        return f"{self.resource} {self.identifier!r} not found"


@deserialize_to_instance
class InvalidInput(Exception):
    """Input that breaks a rule; `errors` name each offending field."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__(errors)
        self.errors = errors

    @classmethod
    def single(cls, field: str, message: str) -> InvalidInput:
        return cls([{"field": field, "message": message}])

    def __str__(self) -> str:
        return "; ".join(f"{e['field']}: {e['message']}" for e in self.errors)


@deserialize_to_instance
class Conflict(Exception):
    """The request is valid but clashes with what is stored; `field`, when given, names the
    input that clashes (e.g. the start date of a post that overlaps another tenure)."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        # Only arguments given travel: nameko sends them as text, so a None would come back "None".
        super().__init__(code, message, *([field] if field else []))
        self.code = code
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return self.message


DOMAIN_ERRORS = (NotFound, InvalidInput, Conflict)
