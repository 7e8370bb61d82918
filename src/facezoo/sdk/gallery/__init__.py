"""A persistent identity gallery: L2-normalised face embeddings in one SQLite file, with exact blockwise cosine
search (torch matmul + topk, any device) and a faiss index saved beside it for millions of faces; or, past one
machine, in PostgreSQL with pgvector (the same API).

store.py    the SQLite file, its atomic writes and the Gallery API (open, add, remove, search, build_index)
search.py   exact search over the in-memory copy (Cache, Match)
index.py    the faiss IVF / HNSW index, its file beside the gallery, and recall@k against exact search
indexed.py  the index's life: loaded while current, updated by writes, rebuilt when stale
pgvector.py PgGallery: the same API on a PostgreSQL + pgvector server (extra facezoo[pgvector])
locate.py   open_gallery(path or postgresql:// URL)
enrol.py    enrolment from a folder of people's images
vectors.py  (N, D) embedding checks, L2 normalisation, identity names, stored-vector integrity
"""

from .enrol import IMAGE_EXTENSIONS, EnrollResult, enroll_folder
from .index import INDEX_KINDS
from .locate import is_url, open_gallery
from .search import Match
from .store import FORMAT, FORMAT_VERSION, Entry, Gallery

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "IMAGE_EXTENSIONS",
    "INDEX_KINDS",
    "EnrollResult",
    "Entry",
    "Gallery",
    "Match",
    "enroll_folder",
    "is_url",
    "open_gallery",
]
