"""The web console and HTTP API of ``duralog ui`` (the ``duralog[ui]`` extra).

``Console`` reads and acts on one log through the command line's own functions;
``create_app`` serves it (pages and ``/api/``) behind the checks of ``guard``.
"""
