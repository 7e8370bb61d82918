"""Where a gallery lives: a file path (SQLite, the embedded default) or a postgresql:// URL (pgvector server)."""

from __future__ import annotations

URL_SCHEMES = ("postgresql://", "postgres://")


def is_url(location) -> bool:
    return str(location).startswith(URL_SCHEMES)


def open_gallery(location, **options):
    """Gallery.open(path, **options) for a path, PgGallery.open(url, **options) for a postgresql:// URL."""
    if is_url(location):
        from .pgvector import PgGallery

        return PgGallery.open(str(location), **options)
    from .store import Gallery

    return Gallery.open(location, **options)
