from certrecon.cli import main

# Guarded: the replay's pool processes start fresh and import the main module again.
if __name__ == "__main__":
    main()
