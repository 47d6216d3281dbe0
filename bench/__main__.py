from __future__ import annotations

from bench.append import main

main()
