from fashion_tune.cli import main

raise SystemExit(main())
