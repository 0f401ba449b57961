"""The organisation registry under /api/v1: the tree, places, people, posts, 双报到, ledgers.

Lists take `offset`/`limit` and most take `within` (an organisation code: only its subtree).
Phone and ID numbers are searched with POST bodies, never query strings, so they stay out of
URLs and access logs.
"""

from __future__ import annotations

import base64
from typing import Any

from flask import g, jsonify, request

from gateway import responses as r
from gateway.http import (
    FILE_TYPES,
    ApiError,
    boolean_query,
    choice_query,
    date_query,
    download,
    home_of,
    household_home,
    identifier_query,
    in_scope,
    integer_query,
    json_body,
    outside_scope,
    person_within_scope,
    require_role,
    within_scope,
)
from gateway.openapi import Operation, Route, link
from gateway.rpc import RpcPool
from shared.events import REGISTRY
from shared.schemas.registry import (
    Classification,
    MembershipEnd,
    NewDualReport,
    NewMembership,
    NewOrganisation,
    NewPerson,
    NewPlace,
    OrganisationClosure,
    OrganisationMove,
    PersonDetails,
    PersonSearch,
    PlaceKind,
    PostClaim,
)
from shared.settings import Settings

TAG = "Organisation registry"
LEDGER_KINDS = ["organisations", "places", "people", "memberships"]
LEDGER = f"any({', '.join(LEDGER_KINDS)})"  # a path converter: one of the kinds, else 404
OFFSET = integer_query("offset", "skip this many", 0, 10**9, 0)
LIMIT = integer_query("limit", "page size", 1, 1000, 200)
WITHIN = identifier_query("within", "an organisation code: only its subtree")
ON = date_query("on", "a date, YYYY-MM-DD (default today)")
HELD_ON = date_query("on", "a date, YYYY-MM-DD: only posts held that day")
CLASSIFICATION = choice_query("classification", "only this classification", [c.value for c in Classification])
INCLUDE_CLOSED = boolean_query("include_closed", "list closed organisations too")
PLACE_KIND = choice_query("kind", "only places of this kind", [k.value for k in PlaceKind])
# Declared in the order the registry's list calls take them.
ORGANISATION_FILTERS = [WITHIN, CLASSIFICATION, INCLUDE_CLOSED, OFFSET, LIMIT]
PLACE_FILTERS = [WITHIN, PLACE_KIND, OFFSET, LIMIT]
COMMUNITY = identifier_query("community_id", "only people of this community")
PARTY_MEMBERS = boolean_query("party_members", "only party members")
IN_SERVICE = boolean_query("in_service", "only in-service party members (在职党员)")
PEOPLE_LIMIT = integer_query("limit", "page size", 1, 200, 50)
FILE_FORMAT = choice_query("format", "the file's format", list(FILE_TYPES), default="csv")
# Every change to the registry needs the registrar role; a key with a scope makes only those
# that name an organisation within it (see gateway.http.require_role).
REGISTRAR = {403: "the API key lacks the registrar role, or acts outside its scope"}


def add_registry_routes(route: Route, rpc: RpcPool, settings: Settings) -> None:
    def call(method: str, *args: Any, **kwargs: Any) -> Any:
        return rpc.call(REGISTRY, method, *args, **kwargs)

    def registrar(*organisations: str | None) -> None:
        require_role(rpc, "registrar", *organisations)

    def scoped(query_values: list[Any]) -> list[Any]:
        """A list call's arguments with `within` (always first) confined to the key's scope."""
        return [within_scope(rpc, query_values[0]), *query_values[1:]]

    # --- organisations ------------------------------------------------------------------------

    @route(
        Operation(
            "GET",
            "/api/v1/organisations",
            "The organisation tree, flat, parents first",
            r.Organisations,
            query=ORGANISATION_FILTERS,
            errors={404: "unknown `within` organisation"},
            tag=TAG,
        )
    )
    def list_organisations() -> Any:
        return jsonify(call("list_organisations", *scoped([query.read() for query in ORGANISATION_FILTERS])))

    @route(
        Operation(
            "POST",
            "/api/v1/organisations",
            "Register an organisation (registering the same one again changes nothing)",
            r.Organisation,
            status=201,
            request=NewOrganisation,
            errors={409: "the code is registered with other details", **REGISTRAR},
            links={
                "organisation": link("GET", "/api/v1/organisations/<id:code>", code="code"),
                "statistics": link("GET", "/api/v1/organisations/<id:code>/statistics", code="code"),
            },
            tag=TAG,
        )
    )
    def register_organisation() -> Any:
        new = json_body(NewOrganisation)
        registrar(new.parent_id)
        return jsonify(call("register_organisation", new.model_dump(mode="json", exclude_unset=True))), 201

    @route(
        Operation(
            "GET",
            "/api/v1/organisations/<id:code>",
            "One organisation, with its path from the street and its children",
            r.OrganisationDetail,
            errors={404: "unknown organisation"},
            tag=TAG,
        )
    )
    def get_organisation(code: str) -> Any:
        return jsonify(call("get_organisation", within_scope(rpc, code)))

    @route(
        Operation(
            "POST",
            "/api/v1/organisations/<id:code>:move",
            "Move an organisation, and its subtree, under a new parent",
            r.Organisation,
            request=OrganisationMove,
            errors={
                404: "unknown organisation",
                409: "closed",
                422: "a cycle or a parent of the wrong kind",
                **REGISTRAR,
            },
            tag=TAG,
        )
    )
    def move_organisation(code: str) -> Any:
        move = json_body(OrganisationMove)
        registrar(code, move.parent_id)
        return jsonify(call("move_organisation", code, move.model_dump(mode="json")))

    @route(
        Operation(
            "POST",
            "/api/v1/organisations/<id:code>:close",
            "Close an organisation (its children must be closed or moved first)",
            r.Organisation,
            request=OrganisationClosure,
            errors={
                404: "unknown organisation",
                409: "already closed, or open children",
                422: "invalid date",
                **REGISTRAR,
            },
            tag=TAG,
        )
    )
    def close_organisation(code: str) -> Any:
        closure = json_body(OrganisationClosure)
        registrar(code)
        return jsonify(call("close_organisation", code, closure.model_dump(mode="json")))

    @route(
        Operation(
            "GET",
            "/api/v1/organisations/<id:code>/statistics",
            "Figures for the subtree: organisations, 业委会 party share, 交叉任职, property companies",
            r.Statistics,
            query=[ON],
            errors={404: "unknown organisation"},
            tag=TAG,
        )
    )
    def organisation_statistics(code: str) -> Any:
        return jsonify(call("organisation_statistics", within_scope(rpc, code), ON.read()))

    @route(
        Operation(
            "GET",
            "/api/v1/organisations/<id:code>/memberships",
            "Who held which post here: the whole history, or on one day",
            r.Memberships,
            query=[HELD_ON],
            errors={404: "unknown organisation, or outside the API key's scope"},
            tag=TAG,
        )
    )
    def organisation_memberships(code: str) -> Any:
        return jsonify(call("list_memberships", within_scope(rpc, code), None, HELD_ON.read()))

    @route(
        Operation(
            "GET",
            "/api/v1/cross-appointments",
            "交叉任职: people on a party committee and a residents' or homeowners' committee at once",
            r.CrossAppointments,
            query=[WITHIN, ON],
            errors={404: "unknown `within` organisation"},
            tag=TAG,
        )
    )
    def cross_appointments() -> Any:
        return jsonify(call("cross_appointments", within_scope(rpc, WITHIN.read()), ON.read()))

    @route(
        Operation(
            "GET",
            "/api/v1/property-companies",
            "The property-company ledger (物业企业台账): party organisation and party-member staff",
            r.PropertyLedger,
            query=[WITHIN],
            errors={404: "unknown `within` organisation"},
            tag=TAG,
        )
    )
    def property_company_ledger() -> Any:
        return jsonify(call("property_company_ledger", within_scope(rpc, WITHIN.read())))

    # --- places -------------------------------------------------------------------------------

    @route(
        Operation(
            "GET",
            "/api/v1/places",
            "Compounds, buildings, units and households",
            r.Places,
            query=PLACE_FILTERS,
            errors={404: "unknown `within` organisation"},
            tag=TAG,
        )
    )
    def list_places() -> Any:
        return jsonify(call("list_places", *scoped([query.read() for query in PLACE_FILTERS])))

    @route(
        Operation(
            "POST",
            "/api/v1/places",
            "Register a compound, building, unit or household",
            r.Place,
            status=201,
            request=NewPlace,
            errors={409: "the code is registered with other details", **REGISTRAR},
            tag=TAG,
        )
    )
    def register_place() -> Any:
        new = json_body(NewPlace)
        # A unit or household names only its parent place, which knows its community.
        named = new.community_id or new.grid_id
        if named is None and new.parent_id and g.key.get("scope"):
            named = call("get_place", new.parent_id)["community_id"]
        registrar(named)
        return jsonify(call("register_place", new.model_dump(mode="json", exclude_unset=True))), 201

    @route(
        Operation(
            "GET",
            "/api/v1/places/<code>",
            "One place",
            r.Place,
            errors={404: "unknown place, or outside the API key's scope"},
            tag=TAG,
        )
    )
    def get_place(code: str) -> Any:
        place = call("get_place", code)
        if not in_scope(rpc, home_of(place)):
            raise outside_scope(f"place {code}")
        return jsonify(place)

    # --- people -------------------------------------------------------------------------------

    @route(
        Operation(
            "GET",
            "/api/v1/people",
            "People in the registry, a page at a time",
            r.PeoplePage,
            query=[COMMUNITY, WITHIN, PARTY_MEMBERS, IN_SERVICE, OFFSET, PEOPLE_LIMIT],
            errors={404: "unknown `within` organisation"},
            tag=TAG,
        )
    )
    def list_people() -> Any:
        community = COMMUNITY.read()
        page = call(
            "list_people",
            community and within_scope(rpc, community, "community"),
            OFFSET.read(),
            PEOPLE_LIMIT.read(),
            within_scope(rpc, WITHIN.read()),
            PARTY_MEMBERS.read(),
            IN_SERVICE.read(),
            scope=g.key.get("scope"),  # the list never reaches past it, whatever `within` is
        )
        return jsonify(page)

    @route(
        Operation(
            "POST",
            "/api/v1/people",
            "Register a person; phone and ID numbers are stored encrypted and shown masked",
            r.Person,
            status=201,
            request=NewPerson,
            errors={409: "the person id is registered with other details", **REGISTRAR},
            links={
                "person": link("GET", "/api/v1/people/<person_id>", person_id="id"),
                "points": link("GET", "/api/v1/points/accounts/<person_id>", person_id="id"),
                "dossier": link("GET", "/api/v1/cadres/<person_id>/dossier", person_id="id"),
            },
            tag=TAG,
        )
    )
    def register_person() -> Any:
        new = json_body(NewPerson)
        # A scoped key registers people where it reaches: a grid's, in a household of the grid.
        scoped = g.key.get("scope")
        registrar(household_home(rpc, new.household_id, new.community_id) if scoped else new.community_id)
        return jsonify(call("register_person", new.model_dump(mode="json", exclude_unset=True))), 201

    @route(
        Operation(
            "POST",
            "/api/v1/people:search",
            "Find people by phone or ID number (in the body, so numbers stay out of URLs and logs)",
            r.PeoplePage,
            request=PersonSearch,
            errors={422: "give exactly one well-formed number"},
            tag=TAG,
        )
    )
    def find_people() -> Any:
        page = call("find_people", json_body(PersonSearch).model_dump(mode="json", exclude_none=True))
        if g.key.get("scope"):  # a number may belong to people anywhere: show those in scope only
            page["items"] = [p for p in page["items"] if in_scope(rpc, home_of(p))]
            page["total"] = len(page["items"])  # all matches come in one page
        return jsonify(page)

    @route(
        Operation(
            "GET",
            "/api/v1/people/<person_id>",
            "One person with every post they held",
            r.PersonDetail,
            errors={404: "unknown person"},
            tag=TAG,
        )
    )
    def get_person(person_id: str) -> Any:
        return jsonify(person_within_scope(rpc, person_id))

    @route(
        Operation(
            "PATCH",
            "/api/v1/people/<person_id>",
            "Change a person's details; fields left out stay as they are",
            r.Person,
            request=PersonDetails,
            errors={404: "unknown person", 409: "changed meanwhile; read and retry", **REGISTRAR},
            tag=TAG,
        )
    )
    def update_person(person_id: str) -> Any:
        details = json_body(PersonDetails)
        if g.key.get("scope"):  # where the person lives now, and where the change would move them
            moving = details.household_id or details.community_id
            moving_to = [household_home(rpc, details.household_id, details.community_id)] if moving else []
            registrar(home_of(call("get_person", person_id)), *moving_to)
        else:
            registrar()
        return jsonify(call("update_person", person_id, details.model_dump(mode="json", exclude_unset=True)))

    # --- memberships ----------------------------------------------------------------------------

    @route(
        Operation(
            "POST",
            "/api/v1/memberships",
            "A person takes a post (a successor ends the open tenure of a one-holder post)",
            r.Membership,
            status=201,
            request=NewMembership,
            errors={409: "overlaps an existing tenure of the post", **REGISTRAR},
            tag=TAG,
        )
    )
    def start_membership() -> Any:
        membership = json_body(NewMembership)
        registrar(membership.organisation_id)
        return jsonify(call("start_membership", membership.model_dump(mode="json"))), 201

    @route(
        Operation(
            "POST",
            "/api/v1/memberships/<membership_id>:end",
            "End a membership",
            r.Membership,
            request=MembershipEnd,
            errors={404: "unknown membership", 409: "already ended", 422: "invalid date", **REGISTRAR},
            tag=TAG,
        )
    )
    def end_membership(membership_id: str) -> Any:
        ending = json_body(MembershipEnd)
        registrar(None)
        return jsonify(call("end_membership", membership_id, ending.model_dump(mode="json")))

    # --- 双报到 -------------------------------------------------------------------------------

    @route(
        Operation(
            "POST",
            "/api/v1/dual-reports",
            "双报到: an in-service member or a unit reports to a community and signs a commitment",
            r.DualReport,
            status=201,
            request=NewDualReport,
            errors={409: "reported already", **REGISTRAR},
            tag=TAG,
        )
    )
    def register_dual_report() -> Any:
        report = json_body(NewDualReport)
        registrar(report.community_id)
        return jsonify(call("register_dual_report", report.model_dump(mode="json"))), 201

    @route(
        Operation(
            "POST",
            "/api/v1/dual-reports/<report_id>/claims",
            "Claim a service post (认领服务岗位); claiming it again changes nothing",
            r.DualReport,
            request=PostClaim,
            errors={404: "unknown report", **REGISTRAR},
            tag=TAG,
        )
    )
    def claim_service_post(report_id: str) -> Any:
        claim = json_body(PostClaim)
        registrar(None)
        return jsonify(call("claim_service_post", report_id, claim.model_dump(mode="json")))

    @route(
        Operation(
            "GET",
            "/api/v1/communities/<community_id>/dual-reports",
            "Who of the community's in-service members and co-building units has reported, who not",
            r.DualReportStatus,
            errors={404: "unknown community"},
            tag=TAG,
        )
    )
    def dual_report_status(community_id: str) -> Any:
        return jsonify(call("dual_report_status", within_scope(rpc, community_id, "community")))

    # --- ledgers (台账) ------------------------------------------------------------------------

    @route(
        Operation(
            "POST",
            f"/api/v1/registry/imports/<{LEDGER}:kind>",
            "Import a ledger (a CSV or .xlsx body); every row is checked before any is written",
            r.ImportJob,
            status=202,
            errors={
                404: "no such ledger",
                415: "send text/csv or an .xlsx file",
                422: "bad rows, each named by line and field; nothing was written",
                **REGISTRAR,
            },
            links={"progress": link("GET", "/api/v1/registry/imports/<import_id:import_id>", import_id="id")},
            tag=TAG,
        )
    )
    def import_ledger(kind: str) -> Any:
        registrar(None)  # its rows may lie anywhere: a key without scope
        file_format = next((f for f, mime in FILE_TYPES.items() if request.mimetype == mime), None)
        if file_format is None:
            raise ApiError(415, "unsupported_media_type", f"send one of {', '.join(FILE_TYPES.values())}")
        request.max_content_length = settings.ledger_max_bytes  # ledgers are bigger than API calls
        content = base64.b64encode(request.get_data(cache=False)).decode()
        return jsonify(call("start_import", kind, file_format, content)), 202

    @route(
        Operation(
            "GET",
            "/api/v1/registry/imports/<import_id:import_id>",
            "An import's progress: rows written of the total",
            r.ImportJob,
            errors={404: "unknown import, or asked for with a key that has a scope"},
            tag=TAG,
        )
    )
    def get_import(import_id: str) -> Any:
        # Only keys without scope import (their rows may lie anywhere), so only they follow one.
        if g.key.get("scope"):
            raise outside_scope(f"import {import_id}")
        return jsonify(call("get_import", import_id))

    @route(
        Operation(
            "GET",
            f"/api/v1/registry/exports/<{LEDGER}:kind>",
            "Export a ledger as CSV or Excel (numbers masked)",
            None,
            query=[FILE_FORMAT, WITHIN],
            files=list(FILE_TYPES.values()),
            errors={404: "unknown ledger or `within` organisation"},
            tag=TAG,
        )
    )
    def export_ledger(kind: str) -> Any:
        file_format = FILE_FORMAT.read()
        return download(
            call("export_ledger", kind, file_format, within_scope(rpc, WITHIN.read())), file_format
        )
