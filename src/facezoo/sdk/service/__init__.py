"""`facezoo serve`'s parts (entry points in facezoo.sdk.server):

api.py        routes, limits, request validation, the operations (FaceService), error shapes: Api.prepare / respond
keys.py       API keys (source, minimum strength) and the loopback rule for serving without one
stdlib.py     the zero-dependency backend (http.server, hardened: request deadline, one send, backlog)
asgi.py       the production backend (Starlette on uvicorn, --workers N, /docs), extra facezoo[serve]
openapi.py    the OpenAPI document, generated from api.ROUTES
downscale.py  detection on a downscaled copy of large images (bounded time per request)
"""
