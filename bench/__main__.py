from __future__ import annotations

from bench.append import main

if __name__ == "__main__":
    main()
