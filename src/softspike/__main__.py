from softspike._console import console

console()
