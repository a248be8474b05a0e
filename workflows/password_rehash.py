"""Password rehash: after a successful sign-in with outdated argon2 parameters, store the new hash.

The new hash was computed by the sign-in path; only hashes travel here, never the password. The write
is conditional on the old hash, so a password changed meanwhile is never overwritten.

Its other parts: started by `AccountsClient.logins.authenticate` (starter/login.py) after a sign-in
(`POST /access-tokens`, api/routes/access_tokens.py); activity `CustomerActivities.replace_password_hash`
(activities/customers.py).
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.customers import CustomerActivities, Rehash
    from workflows.registration import ACTIVITY_OPTIONS

__all__ = ["PasswordRehashWorkflow", "Rehash"]


@workflow.defn
class PasswordRehashWorkflow:
    @workflow.run
    async def run(self, rehash: Rehash) -> bool:
        return await workflow.execute_activity_method(
            CustomerActivities.replace_password_hash, rehash, **ACTIVITY_OPTIONS
        )
