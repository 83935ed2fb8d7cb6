from gan_engine.cli import main

main()
