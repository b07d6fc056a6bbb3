"""farm-api: farm over HTTP for other systems, the second face of the same
views the CLI shows (farm.fleet.views). Stateless: any number run behind a load
balancer, each reading and writing Redis through farm.store.

  tokens.py  bearer tokens (a file of sha256 digests, roles reader and operator)
  app.py     the FastAPI application: routes in Ironic's shapes, errors as JSON
  server.py  the daemon: configuration, TLS, uvicorn, a bounded exit
"""
