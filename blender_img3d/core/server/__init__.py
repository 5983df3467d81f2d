"""The GPU server (``python -m blender_img3d serve``) and its client, the "remote" backend.

An artist's laptop without an NVIDIA GPU (or without torch) sends a job to a
GPU box on the LAN and gets the same files and mesh data back that a local
run would have made:

- ``protocol``: what both sides agree on, with no third-party import: the
  ``/v1`` routes, the flat settings a job takes (the ``Request`` field names,
  checked by ``Request.from_dict`` / ``Request.validate``), the settings the
  server owns, the result archive's layout and the JSON error body.
- ``config``: the server's settings, the token files, the bind rule
  (loopback by default; any other address only with a token) and the checks
  of ``serve``'s options and TLS files before it says Ready.
- ``auth``: bearer tokens → client names (constant-time), the FastAPI
  dependency every non-public route declares.
- ``limits``: the connection cap, header/body deadlines and descriptor limit
  that keep a stranger's half-sent requests from starving the server.
- ``logsafety``: escaped control characters and rate-limited repeats in the log.
- ``uploads``: reading a request body as it streams in, with the size limit
  enforced on the way and the upload written only inside its job folder.
- ``jobstore``: job records, the bounded queue, one worker per GPU running
  ``core.backend.get_backend("local")`` with the model warm, cancellation,
  server-sent-event fan-out and the deletion of old results.
- ``app``: the FastAPI application and ``serve()`` (uvicorn, optional TLS).
- ``web``: the browser page at ``/`` (its files in ``web/``), the settings
  schema it reads and the route for one result file.
- ``client``: ``ServerClient`` (HTTP through ``requests``) and
  :class:`~.client.RemoteBackend`, registered in ``core.backend`` as ``"remote"``.

May import: the rest of ``core``. FastAPI, uvicorn and python-multipart (the
``[server]`` extra) are imported only inside ``app``/``uploads`` functions, and
the client needs nothing but ``requests`` and numpy, so a laptop (or Blender)
without torch can use it; ``import blender_img3d.core.server.<x>`` stays cheap.
"""
