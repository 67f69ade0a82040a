"""HTTP plumbing shared by the routes: body reading, auth, error handlers, middleware."""
