from softspike.cli import console_main

console_main()
