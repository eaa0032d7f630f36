/* bad-marker.c — malformed region markers for booksnip's self-test. */
/* @book begin selftest-extra word */
static int one(void) { return 1; }
/* @book end selftest-extra */
    /*@book begin selftest-nospace*/
static int two(void) { return 2; }
    /*@book end selftest-nospace*/
static int three(void) { return 3; } /* @book begin selftest-trailing */
/* @book begin selftest-unclosed
/* @book end selftest-unclosed */ int four;
