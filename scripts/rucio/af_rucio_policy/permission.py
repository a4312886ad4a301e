"""Permissions: Rucio's generic module, with rules in user scopes reserved to the scope owner."""
from typing import Any

import rucio.core.permission.generic as generic
from rucio.core.account import has_account_attribute
from rucio.core.scope import is_scope_owner


def perm_add_rule(issuer, kwargs: dict[str, Any], session) -> bool:
    if generic._is_root(issuer) or has_account_attribute(account=issuer, key='admin', session=session):
        return True
    for did in kwargs.get('dids') or []:
        scope = did['scope']
        if scope.external.startswith('user.') and not is_scope_owner(scope=scope, account=issuer, session=session):
            return False
    return generic.perm_add_rule(issuer, kwargs, session=session)


def has_permission(issuer, action: str, kwargs: dict[str, Any], session=None):
    if action == 'add_rule':
        return perm_add_rule(issuer, kwargs, session)
    return generic.has_permission(issuer, action, kwargs, session=session)
