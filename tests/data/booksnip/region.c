/* region.c — well-formed regions for booksnip's self-test (make book-selftest). */
/* @book begin selftest-sum */
static int sum(int a, int b) { return a + b; }
/* @book end selftest-sum */
