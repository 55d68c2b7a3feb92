"""The HTML admin pages: server-rendered, one form per action, no script needed.

Every form carries the session's CSRF token (checked by the access middleware).
Destructive actions need confirmation: the page's small script asks in a
``<dialog>`` and marks the form confirmed; without the script the server answers with
a confirmation page that re-posts the same form. After an action the browser is
redirected (303) to the page it came from, with a message shown once. Handlers parse
the form, call the same action (:mod:`gateway.admin.actions`) the API calls, and
render the outcome.
"""

from __future__ import annotations

from aiohttp import web

from gateway.admin.pages import (
    audit,
    banner,
    device,
    login,
    pins,
    probe,
    rejected,
    revocation,
    settings,
    status,
    trust,
)


def setup(app: web.Application) -> None:
    """The pages but the device identity's (see :func:`setup_device`)."""
    for module in (
        status,
        login,
        trust,
        rejected,
        pins,
        revocation,
        probe,
        settings,
        audit,
        banner,
    ):
        module.setup(app)


def setup_device(app: web.Application) -> None:
    device.setup(app)
