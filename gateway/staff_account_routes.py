"""Staff accounts under /api/v1/staff-accounts, for an administrator with the `account_admin`
role (the command line, `python -m gateway.staff`, does the same for operators).

An administrator acts within its scope, as every staff action does: it sees and changes only
accounts whose scope lies in its subtree, and gives an account a scope there. It grants only
roles it holds itself, so no account can be made more powerful than the one that made it. A
password it sets is for the member's next sign-in only (see gateway/staff.py).
"""

from __future__ import annotations

from typing import Any, Literal

from flask import g, jsonify
from pydantic import BaseModel, ConfigDict, Field

from gateway import responses as r
from gateway.http import ApiError, in_known_scope, json_body, outside_scope, require_role
from gateway.keys import ROLES
from gateway.openapi import Operation, Route, link
from gateway.staff import PASSWORD_MAX, PASSWORD_MIN, StaffAccounts, StaffInputRejected
from shared.errors import Conflict, InvalidInput

TAG = "Staff accounts"
ROLE = "account_admin"
ADMIN = {403: "the caller lacks the account_admin role, a role it grants, or the scope it gives"}
UNKNOWN = {404: "no such account within the caller's scope"}


# The account rules of gateway/staff.py, in the document too (usernames are case-insensitive).
Username = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{2,31}$", description="3–32 of a-z 0-9 . _ -")
Password = Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX, description="not containing the username")
RoleName = Literal[tuple(ROLES)]  # type: ignore[valid-type]


class NewStaffAccount(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Username
    name: str = Field(min_length=1, max_length=40, description="as the portal shows it")
    password: str = Password
    roles: list[RoleName] = Field(default_factory=list, max_length=len(ROLES))
    scope: str | None = Field(None, max_length=40, description="an organisation code; none: everywhere")


class StaffAccountChange(BaseModel):
    """Only the fields given change; `"scope": null` makes the account act everywhere."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=40)
    roles: list[RoleName] | None = Field(None, max_length=len(ROLES))
    scope: str | None = Field(None, max_length=40)


class PasswordReset(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: str = Password


def add_staff_account_routes(route: Route, rpc: Any, staff: StaffAccounts) -> None:
    def administers(scope: str | None) -> None:
        """The caller is an account administrator whose scope covers `scope` (None: everywhere)."""
        require_role(rpc, ROLE, scope)

    def grantable(roles: list[str]) -> None:
        lacking = sorted(set(roles) - set(g.key.get("roles", [])))
        if lacking:
            raise ApiError(
                403,
                "forbidden",
                f"an administrator grants and manages only roles it holds; it lacks {lacking}",
            )

    def administered(username: str) -> dict[str, Any]:
        """The account, if the caller administers it: 403 without the role (before any lookup,
        so that no one else learns which usernames exist), 404 outside the caller's scope, as
        for an unknown one, and 403 for an account holding a role the caller lacks (resetting
        its password would hand the caller that role)."""
        require_role(rpc, ROLE)
        account = staff.account(username)
        if account is None or not covers(account["scope"]):
            raise outside_scope(f"staff account {username}")
        grantable(account["roles"])
        return account

    def covers(scope: str | None) -> bool:
        return not g.key.get("scope") or (scope is not None and in_known_scope(rpc, scope))

    def rejected(exc: StaffInputRejected) -> InvalidInput:
        return InvalidInput.single(exc.field, exc.message)

    @route(
        Operation(
            "GET",
            "/api/v1/staff-accounts",
            "Staff accounts within the caller's scope",
            r.StaffAccountPage,
            errors={403: "the caller lacks the account_admin role"},
            tag=TAG,
        )
    )
    def list_staff_accounts() -> Any:
        require_role(rpc, ROLE)
        accounts = staff.records()
        # One registry call per scope, not per account.
        covered = {scope: covers(scope) for scope in {account["scope"] for account in accounts}}
        return jsonify({"items": [account for account in accounts if covered[account["scope"]]]})

    @route(
        Operation(
            "POST",
            "/api/v1/staff-accounts",
            "Create a staff account; the member chooses their own password at the first sign-in",
            r.StaffAccount,
            status=201,
            request=NewStaffAccount,
            errors={409: "the username is taken", **ADMIN},
            links={
                "disable": link("POST", "/api/v1/staff-accounts/<id:username>:disable", username="username")
            },
            tag=TAG,
        )
    )
    def create_staff_account() -> Any:
        new = json_body(NewStaffAccount)
        administers(new.scope)
        grantable(new.roles)
        try:
            username = staff.create(new.username, new.name, new.password, new.roles, new.scope)
        except StaffInputRejected as exc:
            if exc.message.endswith("is taken"):
                raise Conflict("username_taken", exc.message, "username") from None
            raise rejected(exc) from None
        return jsonify(staff.account(username)), 201

    @route(
        Operation(
            "POST",
            "/api/v1/staff-accounts/<id:username>:update",
            "Change a staff account's name, roles or scope; signed-in sessions follow at once",
            r.StaffAccount,
            request=StaffAccountChange,
            errors={**UNKNOWN, **ADMIN},
            tag=TAG,
        )
    )
    def update_staff_account(username: str) -> Any:
        change = json_body(StaffAccountChange)
        administered(username)
        given = change.model_dump(exclude_unset=True)
        if "scope" in given:
            administers(change.scope)
        if change.roles is not None:
            grantable(change.roles)
        for field in ("name", "roles"):  # only a scope may be null (everywhere)
            if field in given and given[field] is None:
                raise InvalidInput.single(field, "must not be null")
        try:
            staff.update(username, **given)
        except StaffInputRejected as exc:
            raise rejected(exc) from None
        return jsonify(staff.account(username))

    @route(
        Operation(
            "POST",
            "/api/v1/staff-accounts/<id:username>:reset-password",
            "Set a password for the member's next sign-in, and end their sessions",
            r.StaffAccount,
            request=PasswordReset,
            errors={**UNKNOWN, **ADMIN},
            tag=TAG,
        )
    )
    def reset_staff_password(username: str) -> Any:
        reset = json_body(PasswordReset)
        administered(username)
        try:
            staff.set_password(username, reset.password)
        except StaffInputRejected as exc:
            raise rejected(exc) from None
        return jsonify(staff.account(username))

    for action, disabled, summary in (
        ("disable", True, "Lock a staff account out and end its sessions"),
        ("enable", False, "Let a disabled staff account sign in again"),
    ):

        def set_disabled(username: str, disabled: bool = disabled) -> Any:
            administered(username)
            staff.set_disabled(username, disabled)
            return jsonify(staff.account(username))

        set_disabled.__name__ = f"{action}_staff_account"
        route(
            Operation(
                "POST",
                f"/api/v1/staff-accounts/<id:username>:{action}",
                summary,
                r.StaffAccount,
                errors={**UNKNOWN, **ADMIN},
                tag=TAG,
            )
        )(set_disabled)
