from nabaa.cli import main

main()
