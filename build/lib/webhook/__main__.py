from webhook.cli.commands import main

raise SystemExit(main())
