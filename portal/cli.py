"""`flask --app portal users …` and `tokens …`: accounts from the command line.

    flask --app portal users create EMAIL [--admin]     prompts for the password (twice)
    flask --app portal users list
    flask --app portal users set-password EMAIL
    flask --app portal tokens create EMAIL [--name NAME] [--expires-days N]

`tokens create` prints only the token on stdout, so a script can take it::

    export WELDSIM_TOKEN=$(flask --app portal tokens create eng@example.com --name laptop)
"""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import select

from .extensions import db
from .models import User
from .services import accounts
from .services.errors import DomainError

users_cli = AppGroup("users", help="Portal accounts.")
tokens_cli = AppGroup("tokens", help="API tokens for scripts (Authorization: Bearer <token>).")


def _fail(exc: DomainError) -> click.ClickException:
    return click.ClickException(str(exc))


@users_cli.command("create")
@click.argument("email")
@click.option("--admin", is_flag=True, help="An administrator sees every project.")
@click.password_option("--password", prompt="Password", help="Prompted for (hidden) when not given.")
def create_user(email: str, admin: bool, password: str) -> None:
    """Create the account EMAIL."""
    try:
        user = accounts.create_user(db.session, email, password, is_admin=admin)
    except DomainError as exc:
        raise _fail(exc) from None
    click.echo(f"created {'admin ' if user.is_admin else ''}user {user.email} (id {user.id})")


@users_cli.command("list")
def list_users() -> None:
    """Every account: id, e-mail, admin, active."""
    for user in db.session.scalars(select(User).order_by(User.id)):
        flags = ", ".join(f for f, on in (("admin", user.is_admin), ("disabled", not user.is_active)) if on)
        click.echo(f"{user.id}\t{user.email}" + (f"\t({flags})" if flags else ""))


@users_cli.command("set-password")
@click.argument("email")
@click.password_option("--password", prompt="New password", help="Prompted for (hidden) when not given.")
def set_password(email: str, password: str) -> None:
    """Set the password of EMAIL (which ends their browser sessions)."""
    try:
        accounts.set_password(db.session, accounts.get_user_by_email(db.session, email), password)
    except DomainError as exc:
        raise _fail(exc) from None
    click.echo(f"password of {email.strip().lower()} changed")


@tokens_cli.command("create")
@click.argument("email")
@click.option("--name", default="cli", show_default=True, help="What the token is for.")
@click.option("--expires-days", type=click.IntRange(1, accounts.MAX_TOKEN_DAYS), default=None,
              help="Days until it expires (default: never).")
def create_token(email: str, name: str, expires_days: int | None) -> None:
    """Create an API token for EMAIL; prints the token (shown once)."""
    try:
        user = accounts.get_user_by_email(db.session, email)
        row, token = accounts.create_token(db.session, user, name, expires_in_days=expires_days)
    except DomainError as exc:
        raise _fail(exc) from None
    click.echo(f"token {row.id} ({row.name!r}) for {user.email}: keep it secret, it is not shown again", err=True)
    click.echo(token)


def init_app(app: Flask) -> None:
    app.cli.add_command(users_cli)
    app.cli.add_command(tokens_cli)
