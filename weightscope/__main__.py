from weightscope.cli import main

main()
