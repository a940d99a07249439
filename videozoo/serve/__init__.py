"""`videozoo serve`: an HTTP API and a web page over the engine (FastAPI + uvicorn, the `serve` extra).

    from videozoo.serve import ServeConfig, ServedModel, create_app
    app = create_app(ServeConfig(models=(ServedModel("x3d_xs", "kinetics400"),)))

The server keeps one warm :class:`~videozoo.engine.Engine` per served model in each worker and
calls ``predict`` on it: the same numbers as ``videozoo predict``. See docs/serve.md.
"""

from videozoo.serve.config import ServeConfig, ServedModel

__all__ = ["ServeConfig", "ServedModel", "create_app", "serve"]


def __getattr__(name: str):
    # FastAPI loads only when a server is made, so the config imports without the extra.
    if name == "create_app":
        from videozoo.serve.app import create_app

        return create_app
    if name == "serve":
        from videozoo.serve.run import serve

        return serve
    raise AttributeError(f"module 'videozoo.serve' has no attribute {name!r}")
