"""``python -m mlctl``: the same entry point as the ``mlctl`` command."""

if __name__ == "__main__":
    from mlctl.commands import main

    main()
