/*
 * sluice relay [--wait[=SECONDS]] ENDPOINT: standard input and output
 * connected to one endpoint, a standalone mode beside the daemon (no
 * config, no event loop).  main.c's only.
 */
#ifndef SL_RELAY_H
#define SL_RELAY_H

/*
 * Run `sluice relay`, argv[0] being "relay".  The exit status: 0 when
 * both directions ended well, 1 after one sentence on stderr, 2 on bad
 * usage.
 */
int sl_relay_main(int argc, char **argv);

#endif
