"""What each role sees on the pages is decided by one helper, pages.may_write."""

from services.metrics.pages import TEMPLATES, may_write
from shared.auth import Principal
from shared.contracts.base import AccessRole


def key(role: AccessRole, *partnerships: str) -> Principal:
    return Principal(key_id=role.value, role=role, partnership_ids=frozenset(partnerships))


def test_coordinators_and_operators_see_write_controls_viewers_and_visitors_do_not():
    assert may_write(key(AccessRole.OPERATOR), "sw-mp")
    assert may_write(key(AccessRole.PARTNERSHIP_ADMIN, "sw-mp"), "sw-mp")
    assert not may_write(key(AccessRole.PARTNERSHIP_ADMIN, "sw-mp"), "nw-mp")
    assert not may_write(key(AccessRole.VIEWER, "sw-mp"), "sw-mp")
    assert not may_write(None, "sw-mp")  # a share-link visitor


def test_templates_ask_the_same_helper():
    assert TEMPLATES.globals["may_write"] is may_write
