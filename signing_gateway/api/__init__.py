"""HTTP layer: routers, dependencies, middleware and problem rendering."""
