"""Size limits of a rule, enforced by :func:`cohorta.rules.validate` and the text parser.

* ``MAX_DEPTH`` - nesting depth of the tree (the root is depth 1; an activity's ``where`` conditions count one level).
* ``MAX_NODES`` - total number of nodes, ``where`` conditions included.
* ``MAX_LIST_LENGTH`` - elements of one list value (``in``, ``has_any`` ...).
* ``MAX_STRING_LENGTH`` - characters of one string value, field path, segment id or seed.
* ``MAX_TEXT_LENGTH`` - characters of a rule in text form.
"""

from __future__ import annotations

MAX_DEPTH = 12
MAX_NODES = 200
MAX_LIST_LENGTH = 1000
MAX_STRING_LENGTH = 1024
MAX_TEXT_LENGTH = 200_000
MAX_DAYS = 36_600  # about 100 years: the largest N in "N days" windows and relative dates
