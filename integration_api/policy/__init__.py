"""Tenancy policy: what each request may use and how much (issue 13: scoped keys, rate limits, budgets).

- ``scope``: a key's and a project's allowed providers and models, and a key's expiry (PERMISSION_DENIED);
- ``limits``: the rules (GCRA rates, concurrency, budget windows) and the in-process limiter;
- ``redis_limiter``: the same rules shared by every replica through Redis (one Lua script per decision), and
  what happens while Redis is down (`rate_limit_fail_mode`);
- ``prices``: the price table (``prices.toml``, overridable) that turns usage into cost;
- ``policy``: `Policy`, the server's one decision point (scope, then every limit and budget, all or nothing),
  and the `Lease` that settles a request's reservation with its real usage;
- ``layer``: `PolicyLayer`, the pipeline layer every provider call passes through.
"""

from integration_api.policy.layer import PolicyLayer
from integration_api.policy.policy import Estimate, Lease, Policy

__all__ = ["Estimate", "Lease", "Policy", "PolicyLayer"]
