"""A persistent identity gallery: L2-normalised face embeddings in one SQLite file, with exact blockwise cosine
search (torch matmul + topk, any device) and an optional approximate faiss index for millions of faces.

store.py    the SQLite file, its atomic writes and the Gallery API (open, add, remove, search, build_index)
search.py   exact search over the in-memory copy (Cache, Match)
index.py    the faiss IVF / HNSW index and recall@k against exact search
enrol.py    enrolment from a folder of people's images
vectors.py  (N, D) embedding checks and L2 normalisation
"""

from .enrol import IMAGE_EXTENSIONS, EnrollResult, enroll_folder
from .index import INDEX_KINDS
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
]
