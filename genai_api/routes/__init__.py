"""Thin routers: HTTP in, a pipeline `Call` through, HTTP out."""
