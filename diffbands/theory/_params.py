"""Reading published parameter files (JSON) with diffbands errors."""

from __future__ import annotations

import json
import os
from typing import Any

from .._errors import DataNotFoundError, FormatError


def read_json(path) -> Any:
    """The parsed content of the JSON file ``path``; :class:`DataNotFoundError` if it is missing,
    :class:`FormatError` if it is not valid JSON."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise DataNotFoundError(f"parameter file not found: {path}") from None
    except json.JSONDecodeError as err:
        raise FormatError(f"{path}: not valid JSON ({err})") from None
