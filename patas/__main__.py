from patas.cli.main import main

main()
