from research_kit.cli import main

main()
