"""The auth server: Docker registry tokens (the protocol CNCF Distribution's ``auth: token``
trusts) granting what the team configurations' roles and shares allow, for users with
bcrypt-hashed passwords and CI tokens; and the registry's notifications as audit records.

* ``tokens``: the signing key and certificate, token issue.
* ``users``: the credential store (users, site admins, CI tokens).
* ``policy``: which actions one requested scope is granted (pure).
* ``notifications``: Distribution's notification envelopes as audit records.
* ``server``: the HTTP server (``bsr-team-cache auth-server``).
"""
