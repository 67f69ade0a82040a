from genai_api.cli import main

raise SystemExit(main())
