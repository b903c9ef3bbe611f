from certrecon.cli import main

main()
