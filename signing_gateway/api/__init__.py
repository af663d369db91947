"""HTTP layer: routers, dependencies, the OpenAPI document and problem rendering.

The middlewares in front of the routers live with their concern: `observability`,
`resilience`, `runtime` and `security` (docs/architecture.md lists them in order).
"""
