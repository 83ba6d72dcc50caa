/*
 * TLS end to end, against the real daemon: certificates are made at run
 * time (tests/support/tlsgen.c), nothing secret is committed.
 *
 * sluice -t: every certificate, key and CA is loaded, and a problem names
 * its file and OpenSSL's reason; certificates that expire within 30 days
 * and upstreams with verify: false are warnings.
 *
 * Built only with TLS (configure found OpenSSL 3).
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>

#include "support/support.h"
#include "support/tlsgen.h"

#include "tls.h"

/* The certificates every test shares, made once. */
static struct {
	st_cert *ca, *server, *client, *other_ca, *other_client;
	st_cert *expired, *soon;
} certs;

static void make_certs(void)
{
	certs.ca = st_cert_make("ca", &(st_cert_opts){.cn = "sluice test CA",
						      .ca = 1});
	certs.server = st_cert_make(
		"server", &(st_cert_opts){.cn = "localhost",
					  .dns = "localhost",
					  .ip = "127.0.0.1",
					  .uri = "spiffe://test/server",
					  .issuer = certs.ca});
	certs.client = st_cert_make(
		"client", &(st_cert_opts){.cn = "ci-runner",
					  .dns = "ci.example.com",
					  .uri = "spiffe://test/ci",
					  .issuer = certs.ca});
	certs.other_ca = st_cert_make(
		"other-ca", &(st_cert_opts){.cn = "another CA", .ca = 1});
	certs.other_client = st_cert_make(
		"other-client", &(st_cert_opts){.cn = "ci-runner",
						.issuer = certs.other_ca});
	certs.expired = st_cert_make(
		"expired", &(st_cert_opts){.cn = "localhost",
					   .dns = "localhost",
					   .issuer = certs.ca,
					   .not_before_days = -30,
					   .not_after_days = -1});
	certs.soon = st_cert_make("soon",
				  &(st_cert_opts){.cn = "localhost",
						  .dns = "localhost",
						  .issuer = certs.ca,
						  .not_after_days = 10});
}

static void free_certs(void)
{
	st_cert_free(certs.ca);
	st_cert_free(certs.server);
	st_cert_free(certs.client);
	st_cert_free(certs.other_ca);
	st_cert_free(certs.other_client);
	st_cert_free(certs.expired);
	st_cert_free(certs.soon);
}

/* ---- sluice -t ----------------------------------------------------------- */

/* A config of one TLS listener with the given tls mapping (flow style). */
static char *listener_conf(const char *name, const char *tls)
{
	char *yaml = st_fmt("routes:\n"
			    "  - name: t\n"
			    "    listen:\n"
			    "      address: tcp://127.0.0.1:%u\n"
			    "      tls: %s\n"
			    "    upstreams: tcp://127.0.0.1:%u\n",
			    st_free_port(), tls, st_free_port());
	char *path = st_write_tmp(name, yaml);

	free(yaml);
	return path;
}

/* sluice -t on conf: its exit status; out must hold every one of want. */
static void check_t(const char *conf, int status, const char *want1,
		    const char *want2)
{
	char *out;
	int rc = st_run_sluice(&out, "-t", "-c", conf, NULL);

	if (rc != status || (want1 && !strstr(out, want1)) ||
	    (want2 && !strstr(out, want2)))
		fail_msg("sluice -t %s: status %d (want %d), said:\n%s\n"
			 "wanted: %s / %s",
			 conf, rc, status, out, want1 ? want1 : "-",
			 want2 ? want2 : "-");
	free(out);
}

static void test_check_good(void **state)
{
	char *tls, *conf, *out;

	(void)state;
	tls = st_fmt("{cert: %s, key: %s, client_ca: %s, verify_client: "
		     "required, allow: {cn: [ci-runner]}}",
		     certs.server->cert_path, certs.server->key_path,
		     certs.ca->cert_path);
	conf = listener_conf("good.yaml", tls);
	assert_int_equal(st_run_sluice(&out, "-t", "-c", conf, NULL), 0);
	if (strstr(out, "warning") != NULL)
		fail_msg("sluice -t warned:\n%s", out);
	assert_non_null(strstr(out, "configuration OK"));
	free(out);
	free(conf);
	free(tls);
}

static void test_check_files(void **state)
{
	char *tls, *conf, *want;

	(void)state;
	/* Missing: the file and the OS's reason. */
	tls = st_fmt("{cert: %s/nonexistent.pem}", st_tmpdir());
	conf = listener_conf("missing.yaml", tls);
	want = st_fmt("tls: cert %s/nonexistent.pem: cannot be read: No such "
		      "file or directory",
		      st_tmpdir());
	check_t(conf, 1, want, ":5:7: ");
	free(want), free(conf), free(tls);

	/* The key of another certificate. */
	tls = st_fmt("{cert: %s, key: %s}", certs.server->cert_path,
		     certs.client->key_path);
	conf = listener_conf("mismatch.yaml", tls);
	want = st_fmt("key %s does not match the certificate %s",
		      certs.client->key_path, certs.server->cert_path);
	check_t(conf, 1, want, "key values mismatch");
	free(want), free(conf), free(tls);

	/* Not a certificate at all: OpenSSL's reason. */
	tls = st_fmt("{cert: %s}", certs.server->key_path);
	conf = listener_conf("notcert.yaml", tls);
	want = st_fmt("tls: cert %s: no start line", certs.server->key_path);
	check_t(conf, 1, want, NULL);
	free(want), free(conf), free(tls);

	/* Expired. */
	tls = st_fmt("{cert: %s, key: %s}", certs.expired->cert_path,
		     certs.expired->key_path);
	conf = listener_conf("expired.yaml", tls);
	want = st_fmt("tls: cert %s: certificate has expired",
		      certs.expired->cert_path);
	check_t(conf, 1, want, NULL);
	free(want), free(conf), free(tls);

	/* A client_ca that is no CA. */
	tls = st_fmt("{cert: %s, key: %s, client_ca: %s, verify_client: "
		     "optional}",
		     certs.server->cert_path, certs.server->key_path,
		     certs.client->cert_path);
	conf = listener_conf("notca.yaml", tls);
	want = st_fmt("tls: client_ca %s: '/CN=ci-runner' is not a CA "
		      "certificate",
		      certs.client->cert_path);
	check_t(conf, 1, want, NULL);
	free(want), free(conf), free(tls);

	/* Under wine, an upstream without ca: takes the Windows store's
	 * roots (wine's crypt32 has the host's CA bundle in it). */
	if (st_wine() != NULL) {
		char *yaml = st_fmt("routes:\n"
				    "  - name: t\n"
				    "    listen: tcp://127.0.0.1:%u\n"
				    "    upstreams:\n"
				    "      - address: tcp://127.0.0.1:%u\n"
				    "        tls: {}\n",
				    st_free_port(), st_free_port());

		conf = st_write_tmp("noca.yaml", yaml);
		check_t(conf, 0, "configuration OK", NULL);
		free(conf), free(yaml);
	}

	/* Ciphers OpenSSL does not know. */
	tls = st_fmt("{cert: %s, key: %s, ciphers: NOSUCHCIPHER}",
		     certs.server->cert_path, certs.server->key_path);
	conf = listener_conf("ciphers.yaml", tls);
	check_t(conf, 1, "tls: ciphers 'NOSUCHCIPHER': no cipher match",
		NULL);
	free(conf), free(tls);
}

static void test_check_warnings(void **state)
{
	char *tls, *conf, *want, *yaml;

	(void)state;
	tls = st_fmt("{cert: %s, key: %s}", certs.soon->cert_path,
		     certs.soon->key_path);
	conf = listener_conf("soon.yaml", tls);
	/* 9 or 10 days, as the second of the check falls. */
	want = st_fmt("warning: %s:5:7: tls: cert %s expires in ", conf,
		      certs.soon->cert_path);
	check_t(conf, 0, want, " days");
	free(want), free(conf), free(tls);

	yaml = st_fmt("routes:\n"
		      "  - name: t\n"
		      "    listen: tcp://127.0.0.1:%u\n"
		      "    upstreams:\n"
		      "      - address: tcp://127.0.0.1:%u\n"
		      "        tls: {verify: false}\n",
		      st_free_port(), st_free_port());
	conf = st_write_tmp("noverify.yaml", yaml);
	check_t(conf, 0, ":6:9: tls: verify: false: the certificate of "
			 "upstream tcp://127.0.0.1:",
		"configuration OK");
	free(conf), free(yaml);
}

/* ---- termination: TLS client -> sluice -> cleartext upstream ------------- */

/* The end of a test with a daemon in front of a server: the daemon stops
 * cleanly (its exit status is checked), then the server. */
static void stop_both(st_daemon *d, st_server *srv)
{
	st_daemon_stop(d);
	st_server_stop(srv);
}

#define MiB (1024ull * 1024)

/* A route that terminates TLS on lport in front of 127.0.0.1:uport, its
 * tls mapping with more lines; terminate_conf: a config of that one,
 * named "tls". */
static char *terminate_route(const char *name, uint16_t lport,
			     uint16_t uport, const char *more)
{
	return st_fmt("  - name: %s\n"
		      "    listen:\n"
		      "      address: tcp://127.0.0.1:%u\n"
		      "      tls:\n"
		      "        cert: %s\n"
		      "        key: %s\n"
		      "%s"
		      "    upstreams: tcp://127.0.0.1:%u\n",
		      name, lport, certs.server->cert_path,
		      certs.server->key_path, more != NULL ? more : "", uport);
}

static char *terminate_conf(uint16_t lport, uint16_t uport, const char *more)
{
	char *r = terminate_route("tls", lport, uport, more);
	char *yaml = st_fmt("routes:\n%s", r);

	free(r);
	return yaml;
}

/* A TLS session to lport verified against the test CA, as localhost. */
static SSL *tls_open(SSL_CTX *ctx, uint16_t lport, st_sock *fd)
{
	char why[256];
	SSL *ssl;

	*fd = st_connect_tcp_retry(lport, ST_WAIT_MS);
	assert_true(*fd != ST_BAD_SOCK);
	ssl = st_tls_handshake(ctx, *fd, "localhost", why, sizeof why);
	if (ssl == NULL)
		fail_msg("TLS handshake with sluice failed: %s", why);
	return ssl;
}

/*
 * 64 MiB each way at once through a TLS listener to an echo upstream,
 * byte-exact, and both half-closes carried: the client's close_notify
 * becomes the upstream's EOF, the upstream's EOF (after the echo) becomes
 * close_notify to the client.
 */
static void test_terminate_bulk(void **state)
{
	uint16_t lport = st_free_port(), uport;
	st_server *srv = st_server_start(st_listen_tcp(&uport, 16), ST_ECHO, 0);
	char *yaml = terminate_conf(lport, uport, NULL), *want;
	SSL_CTX *ctx = st_tls_client_ctx(certs.ca, NULL, 0, 0);
	st_daemon *d = st_daemon_start(yaml);
	st_sock fd;
	SSL *ssl;

	(void)state;
	ssl = tls_open(ctx, lport, &fd);
	st_tls_exchange(ssl, fd, 42, 42, 64 * MiB);
	SSL_free(ssl);
	st_close(fd);
	assert_int_equal(st_daemon_wait_log(d, "reason=done", 1, ST_WAIT_MS),
			 0);
	want = st_fmt("bytes_in=%llu bytes_out=%llu", 64 * MiB, 64 * MiB);
	assert_int_equal(st_daemon_log_count(d, want), 1);
	free(want);
	stop_both(d, srv);
	SSL_CTX_free(ctx);
	free(yaml);
}

/* The same with openssl s_client as the client: a real one, not ours. */
static void test_terminate_s_client(void **state)
{
	uint16_t lport = st_free_port(), uport;
	st_server *srv = st_server_start(st_listen_tcp(&uport, 16), ST_ECHO, 0);
	char *yaml = terminate_conf(lport, uport, NULL), *cmd, *out;
	st_daemon *d = st_daemon_start(yaml);
	int rc;

	(void)state;
	/* The line out, time for its echo, then the end of input, which
	 * makes s_client close. */
	cmd = st_fmt("(printf 'ping through tls\\n'; sleep 2) | openssl "
		     "s_client -connect 127.0.0.1:%u -servername localhost "
		     "-verify_hostname localhost -CAfile %s "
		     "-verify_return_error -quiet -no_ign_eof",
		     lport, certs.ca->cert_path);
	rc = st_run_cmd(&out, "sh", "-c", cmd, NULL);
	if (rc == 127)
		skip(); /* no openssl command here */
	if (rc != 0 || strstr(out, "ping through tls") == NULL)
		fail_msg("s_client exited %d:\n%s", rc, out);
	free(out);
	free(cmd);
	assert_int_equal(
		st_daemon_wait_log(d, "route=tls", 1, ST_WAIT_MS), 0);
	stop_both(d, srv);
	free(yaml);
}

/* The peer closed s, or reset it, within ST_WAIT_MS, sending nothing. */
static int ended(st_sock s)
{
	int r = st_wait_closed(s, ST_WAIT_MS);

	return r == 0 || r == -1;
}

/*
 * A client that says nothing, one that sends a partial ClientHello, and
 * one that sends garbage: the first two end at handshake_timeout, the
 * third at once; none holds up a TLS session running beside them, and
 * none reaches the upstream.
 */
static void test_handshake_timeout(void **state)
{
	static const char partial[] = "\x16\x03\x01\x02\x00\x01\x00\x01";
	uint16_t lport = st_free_port(), uport;
	st_server *srv = st_server_start(st_listen_tcp(&uport, 16), ST_ECHO, 0);
	char *yaml = terminate_conf(lport, uport,
				    "        handshake_timeout: 3s\n");
	SSL_CTX *ctx = st_tls_client_ctx(certs.ca, NULL, 0, 0);
	st_daemon *d = st_daemon_start(yaml);
	st_sock silent, half, junk, fd;
	SSL *ssl;

	(void)state;
	silent = st_connect_tcp_retry(lport, ST_WAIT_MS);
	half = st_connect_tcp(lport);
	junk = st_connect_tcp(lport);
	assert_true(silent != ST_BAD_SOCK && half != ST_BAD_SOCK &&
		    junk != ST_BAD_SOCK);
	st_send_all(half, partial, sizeof partial - 1);
	st_send_all(junk, "GET / HTTP/1.0\r\n\r\n", 18);
	/* The garbage ends its session at once (a reset, as every
	 * refusal; the order of the log lines below shows "at once"). */
	assert_true(ended(junk));
	assert_int_equal(st_daemon_log_count(d, "reason=tls-handshake-"), 0);

	ssl = tls_open(ctx, lport, &fd);
	st_tls_exchange(ssl, fd, 7, 7, 4 * MiB);
	SSL_free(ssl);
	st_close(fd);

	assert_true(ended(silent));
	assert_true(ended(half));
	assert_int_equal(st_daemon_wait_log(d, "reason=tls-handshake-timeout",
					    2, ST_WAIT_MS),
			 0);
	assert_int_equal(st_daemon_log_count(d, "reason=tls-handshake "), 1);
	assert_int_equal(st_daemon_wait_log(d, "reason=done", 1, ST_WAIT_MS),
			 0);
	/* Only the TLS session reached the upstream. */
	assert_int_equal(st_server_accepted(srv), 1);
	st_close(silent);
	st_close(half);
	st_close(junk);
	stop_both(d, srv);
	SSL_CTX_free(ctx);
	free(yaml);
}

/*
 * A listener with accept_proxy and tls: the PROXY header and the
 * ClientHello in one segment, so that one read takes both; the handshake
 * gets the bytes after the header, the upstream only plaintext, and the
 * log the client the header names.
 */
static void test_proxy_then_tls(void **state)
{
	static const char hdr[] = "PROXY TCP4 192.0.2.7 127.0.0.1 5000 443\r\n";
	uint16_t lport = st_free_port(), uport;
	st_server *srv = st_server_start(st_listen_tcp(&uport, 16), ST_ECHO, 0);
	char *yaml = terminate_conf(lport, uport, NULL), *seg;
	SSL_CTX *ctx = st_tls_client_ctx(certs.ca, NULL, 0, 0);
	st_daemon *d;
	st_sock fd;
	char why[256], *hello;
	BIO *mem, *sock;
	SSL *ssl;
	long n;

	(void)state;
	/* accept_proxy on the listener: after its address line. */
	seg = strstr(yaml, "      tls:\n");
	assert_non_null(seg);
	{
		char *with = st_fmt("%.*s      accept_proxy: true\n%s",
				    (int)(seg - yaml), yaml, seg);

		free(yaml);
		yaml = with;
	}
	d = st_daemon_start(yaml);
	fd = st_connect_tcp_retry(lport, ST_WAIT_MS);
	assert_true(fd != ST_BAD_SOCK);
	/* The ClientHello into memory first, then out with the header. */
	ssl = st_tls_new(ctx, fd, "localhost");
	mem = BIO_new(BIO_s_mem());
	sock = SSL_get_rbio(ssl);
	BIO_up_ref(sock);
	SSL_set0_wbio(ssl, mem);
	assert_true(SSL_connect(ssl) <= 0);
	n = BIO_get_mem_data(mem, &hello);
	assert_true(n > 0);
	seg = malloc(sizeof hdr - 1 + (size_t)n);
	assert_non_null(seg);
	memcpy(seg, hdr, sizeof hdr - 1);
	memcpy(seg + sizeof hdr - 1, hello, (size_t)n);
	st_send_all(fd, seg, sizeof hdr - 1 + (size_t)n);
	free(seg);
	SSL_set0_wbio(ssl, sock); /* the socket from here on */
	ssl = st_tls_finish(ssl, fd, why, sizeof why);
	if (ssl == NULL)
		fail_msg("handshake after the PROXY header: %s", why);
	st_tls_exchange(ssl, fd, 5, 5, MiB);
	SSL_free(ssl);
	st_close(fd);
	assert_int_equal(st_daemon_wait_log(d, "client=192.0.2.7:5000", 1,
					    ST_WAIT_MS),
			 0);
	assert_int_equal(st_daemon_log_count(d, "reason=done"), 1);
	stop_both(d, srv);
	SSL_CTX_free(ctx);
	free(yaml);
}

/* Copy cert's files to live.pem and live.key in the scratch directory. */
static void put_live(const st_cert *cert, char **pem, char **key)
{
	char *text = st_read_file(cert->cert_path);

	assert_non_null(text);
	free(*pem);
	*pem = st_write_tmp("live.pem", text);
	free(text);
	text = st_read_file(cert->key_path);
	assert_non_null(text);
	free(*key);
	*key = st_write_tmp("live.key", text);
	free(text);
}

/* The common name of the certificate a new TLS session to lport gets. */
static void expect_cn(SSL_CTX *ctx, uint16_t lport, const char *cn)
{
	char name[128] = "";
	st_sock fd;
	SSL *ssl = tls_open(ctx, lport, &fd);
	X509 *x = SSL_get1_peer_certificate(ssl);

	assert_non_null(x);
	X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName,
				  name, sizeof name);
	X509_free(x);
	SSL_free(ssl);
	st_close(fd);
	assert_string_equal(name, cn);
}

/*
 * A reload reads the certificate again though its file name did not
 * change: new sessions get the new one, a session open across the
 * reload goes on (and ends as done).  A new certificate that does not
 * load keeps the one the listener had, and the rest of the reload
 * applies.
 */
static void test_reload_cert(void **state)
{
	uint16_t lport = st_free_port(), plain = st_free_port(), uport;
	st_server *srv = st_server_start(st_listen_tcp(&uport, 16), ST_ECHO, 0);
	st_cert *next = st_cert_make(
		"next", &(st_cert_opts){.cn = "localhost-next",
					.dns = "localhost",
					.issuer = certs.ca});
	SSL_CTX *ctx = st_tls_client_ctx(certs.ca, NULL, 0, 0);
	char *pem = NULL, *key = NULL, *yaml, *junk;
	st_daemon *d;
	st_sock fd;
	SSL *open;

	(void)state;
	put_live(certs.server, &pem, &key);
	yaml = st_fmt("routes:\n"
		      "  - name: tls\n"
		      "    listen:\n"
		      "      address: tcp://127.0.0.1:%u\n"
		      "      tls: {cert: %s, key: %s}\n"
		      "    upstreams: tcp://127.0.0.1:%u\n",
		      lport, pem, key, uport);
	d = st_daemon_start(yaml);
	expect_cn(ctx, lport, "localhost");
	open = tls_open(ctx, lport, &fd);

	put_live(next, &pem, &key);
	st_daemon_signal(d, SIGHUP);
	assert_int_equal(st_daemon_wait_log(d, "reloaded ", 1, ST_WAIT_MS), 0);
	expect_cn(ctx, lport, "localhost-next");

	/* A broken one: the rest of the reload applies (a new route), the
	 * listener keeps the certificate it had, and the log says why. */
	junk = st_write_tmp("live.pem", "not a certificate\n");
	free(yaml);
	yaml = st_fmt("routes:\n"
		      "  - name: tls\n"
		      "    listen:\n"
		      "      address: tcp://127.0.0.1:%u\n"
		      "      tls: {cert: %s, key: %s}\n"
		      "    upstreams: tcp://127.0.0.1:%u\n"
		      "  - name: plain\n"
		      "    listen: tcp://127.0.0.1:%u\n"
		      "    upstreams: tcp://127.0.0.1:%u\n",
		      lport, pem, key, uport, plain, uport);
	st_daemon_write_config(d, yaml);
	st_daemon_signal(d, SIGHUP);
	assert_int_equal(st_daemon_wait_log(d, "reloaded ", 2, ST_WAIT_MS), 0);
	assert_int_equal(st_daemon_log_count(d, "live.pem: no start line; "
						"keeping the certificates "
						"loaded before"),
			 1);
	expect_cn(ctx, lport, "localhost-next");
	st_echo_once(plain, "the rest of the reload");

	/* The session from before both reloads, whole to its end. */
	st_tls_exchange(open, fd, 21, 21, 4 * MiB);
	SSL_free(open);
	st_close(fd);
	assert_int_equal(st_daemon_wait_log(d, "reason=done", 1, ST_WAIT_MS),
			 0);
	stop_both(d, srv);
	st_cert_free(next);
	SSL_CTX_free(ctx);
	free(pem);
	free(key);
	free(junk);
	free(yaml);
}

/* A handshake to lport with a client of versions [min, max]: 1 when it
 * succeeds, 0 when it is refused. */
static int version_ok(uint16_t lport, int min, int max)
{
	SSL_CTX *ctx = st_tls_client_ctx(certs.ca, NULL, min, max);
	st_sock fd = st_connect_tcp_retry(lport, ST_WAIT_MS);
	char why[256];
	SSL *ssl;
	int ok;

	assert_true(fd != ST_BAD_SOCK);
	ssl = st_tls_handshake(ctx, fd, "localhost", why, sizeof why);
	ok = ssl != NULL;
	if (ssl != NULL) {
		assert_int_equal(SSL_version(ssl), max != 0 ? max : min);
		SSL_free(ssl);
	}
	st_close(fd);
	SSL_CTX_free(ctx);
	return ok;
}

/* TLS 1.2 and 1.3 clients; one below min_version is refused. */
static void test_versions(void **state)
{
	uint16_t lport = st_free_port(), strict = st_free_port(), uport;
	st_server *srv = st_server_start(st_listen_tcp(&uport, 16), ST_ECHO, 0);
	char *a = terminate_route("any", lport, uport, NULL);
	char *b = terminate_route("strict", strict, uport,
				  "        min_version: \"1.3\"\n");
	char *yaml = st_fmt("routes:\n%s%s", a, b);
	st_daemon *d = st_daemon_start(yaml);

	(void)state;
	assert_int_equal(version_ok(lport, TLS1_2_VERSION, TLS1_2_VERSION), 1);
	assert_int_equal(version_ok(lport, TLS1_3_VERSION, TLS1_3_VERSION), 1);
	assert_int_equal(version_ok(strict, TLS1_3_VERSION, TLS1_3_VERSION),
			 1);
	assert_int_equal(version_ok(strict, TLS1_2_VERSION, TLS1_2_VERSION),
			 0);
	/* TLS 1.1 is refused everywhere. */
	assert_int_equal(version_ok(lport, TLS1_1_VERSION, TLS1_1_VERSION), 0);
	stop_both(d, srv);
	free(a);
	free(b);
	free(yaml);
}

/*
 * A TLS client that ends its connection without close_notify: the
 * session ends as tls-truncated, not as an orderly end.
 */
static void test_truncated(void **state)
{
	uint16_t lport = st_free_port(), uport;
	st_server *srv = st_server_start(st_listen_tcp(&uport, 16), ST_ECHO, 0);
	char *yaml = terminate_conf(lport, uport, NULL);
	SSL_CTX *ctx = st_tls_client_ctx(certs.ca, NULL, 0, 0);
	st_daemon *d = st_daemon_start(yaml);
	st_sock fd;
	SSL *ssl;

	(void)state;
	ssl = tls_open(ctx, lport, &fd);
	assert_int_equal(SSL_write(ssl, "abc", 3), 3);
	st_shutdown_wr(fd); /* a FIN, no close_notify before it */
	assert_int_equal(st_daemon_wait_log(d, "reason=tls-truncated", 1,
					    ST_WAIT_MS),
			 0);
	SSL_free(ssl);
	st_close(fd);

	/* The end in the middle of a record: a header that promises 100
	 * bytes, 10 of them, the FIN.  (Once a busy loop: OpenSSL holds the
	 * partial record, so "pending" stayed true with nothing to read.) */
	ssl = tls_open(ctx, lport, &fd);
	st_send_all(fd, "\x17\x03\x03\x00\x64" "0123456789", 15);
	st_shutdown_wr(fd);
	assert_int_equal(st_daemon_wait_log(d, "reason=tls-truncated", 2,
					    ST_WAIT_MS),
			 0);
	SSL_free(ssl);
	st_close(fd);
	stop_both(d, srv);
	SSL_CTX_free(ctx);
	free(yaml);
}

/* ---- origination: cleartext client -> sluice -> TLS upstream ------------- */

/*
 * One daemon, two routes: "out" takes cleartext on oport and speaks TLS
 * (its upstream's tls mapping up_tls) to up, where "in" (listening at
 * in, TLS with the server certificate given) hands the plaintext to an
 * echo server on eport.  up is in unless the test names it otherwise.
 */
static char *chain_conf(uint16_t oport, const char *in, const char *up,
			uint16_t eport, const st_cert *server,
			const char *up_tls)
{
	return st_fmt("routes:\n"
		      "  - name: out\n"
		      "    listen: tcp://127.0.0.1:%u\n"
		      "    upstreams:\n"
		      "      - address: %s\n"
		      "        tls: %s\n"
		      "  - name: in\n"
		      "    listen:\n"
		      "      address: %s\n"
		      "      tls: {cert: %s, key: %s}\n"
		      "    upstreams: tcp://127.0.0.1:%u\n",
		      oport, up != NULL ? up : in, up_tls, in,
		      server->cert_path, server->key_path, eport);
}

/*
 * Cleartext -> TLS over in -> cleartext: 64 MiB each way at once,
 * byte-exact, and both routes end as done: every half-close was carried
 * across the TLS hop.
 */
static void chain_bulk(const char *in, const char *up_tls)
{
	uint16_t oport = st_free_port(), eport;
	st_server *srv = st_server_start(st_listen_tcp(&eport, 16), ST_ECHO, 0);
	char *yaml = chain_conf(oport, in, NULL, eport, certs.server, up_tls);
	st_daemon *d = st_daemon_start(yaml);
	st_sock c = st_connect_tcp_retry(oport, ST_WAIT_MS);

	assert_true(c != ST_BAD_SOCK);
	if (st_exchange(c, 9, 9, 64 * MiB, ST_STALL_MS) != 0) {
		st_print_logs();
		fail_msg("64 MiB each way through the chain: not whole");
	}
	st_close(c);
	assert_int_equal(st_daemon_wait_log(d, "reason=done", 2, ST_WAIT_MS),
			 0);
	stop_both(d, srv);
	free(yaml);
}

/* TCP -> TLS over TCP -> TCP, the upstream verified by its IP address
 * (the address's host, no server_name). */
static void test_originate_bulk(void **state)
{
	char *in = st_fmt("tcp://127.0.0.1:%u", st_free_port());
	char *tls = st_fmt("{ca: %s}", certs.ca->cert_path);

	(void)state;
	chain_bulk(in, tls);
	free(in);
	free(tls);
}

/*
 * TLS over the local kind of stream, accepted and connected: a Unix
 * socket natively, a named pipe with sluice.exe under wine (IOCP), which
 * has no host name: server_name says what to verify.
 */
static void test_tls_over_local(void **state)
{
	char *in = st_wine() != NULL
			   ? st_fmt("'pipe:\\\\.\\pipe\\sluice-tls-%ld'",
				    (long)getpid())
			   : st_fmt("unix:%s/mid.sock", st_tmpdir());
	char *tls = st_fmt("{ca: %s, server_name: localhost}",
			   certs.ca->cert_path);

	(void)state;
	chain_bulk(in, tls);
	free(in);
	free(tls);
}

/*
 * TLS -> TLS: one route terminates the client's TLS and speaks TLS to
 * its upstream (a second route, which terminates it in front of an echo
 * server): 64 MiB each way at once through both, byte-exact, every
 * close_notify carried as a half-close.
 */
static void test_tls_to_tls(void **state)
{
	uint16_t lport = st_free_port(), iport = st_free_port(), eport;
	st_server *srv = st_server_start(st_listen_tcp(&eport, 16), ST_ECHO, 0);
	char *yaml = st_fmt("routes:\n"
			    "  - name: both\n"
			    "    listen:\n"
			    "      address: tcp://127.0.0.1:%u\n"
			    "      tls: {cert: %s, key: %s}\n"
			    "    upstreams:\n"
			    "      - address: tcp://localhost:%u\n"
			    "        tls: {ca: %s}\n"
			    "  - name: in\n"
			    "    listen:\n"
			    "      address: tcp://127.0.0.1:%u\n"
			    "      tls: {cert: %s, key: %s}\n"
			    "    upstreams: tcp://127.0.0.1:%u\n",
			    lport, certs.server->cert_path,
			    certs.server->key_path, iport, certs.ca->cert_path,
			    iport, certs.server->cert_path,
			    certs.server->key_path, eport);
	SSL_CTX *ctx = st_tls_client_ctx(certs.ca, NULL, 0, 0);
	st_daemon *d = st_daemon_start(yaml);
	st_sock fd;
	SSL *ssl;

	(void)state;
	ssl = tls_open(ctx, lport, &fd);
	st_tls_exchange(ssl, fd, 13, 13, 64 * MiB);
	SSL_free(ssl);
	st_close(fd);
	assert_int_equal(st_daemon_wait_log(d, "reason=done", 2, ST_WAIT_MS),
			 0);
	stop_both(d, srv);
	SSL_CTX_free(ctx);
	free(yaml);
}

/* One short echo through oport must fail: the session is cut. */
static void expect_refused(uint16_t oport)
{
	st_sock c = st_connect_tcp_retry(oport, ST_WAIT_MS);

	assert_true(c != ST_BAD_SOCK);
	st_send_all(c, "hello", 5);
	assert_true(ended(c));
	st_close(c);
}

/*
 * Verification of the upstream: a server_name its certificate does not
 * carry is refused; a self-signed certificate is refused, unless verify:
 * false; the name defaults to the address's host (localhost: a DNS
 * name).
 */
static void test_originate_verify(void **state)
{
	uint16_t eport;
	st_server *srv = st_server_start(st_listen_tcp(&eport, 16), ST_ECHO, 0);
	st_cert *self = st_cert_make(
		"self", &(st_cert_opts){.cn = "localhost", .dns = "localhost",
					.ip = "127.0.0.1"});
	char *ca = st_fmt("{ca: %s}", certs.ca->cert_path);
	char *wrong = st_fmt("{ca: %s, server_name: wrong.example}",
			     certs.ca->cert_path);
	struct {
		const st_cert *server;
		const char *tls;
		int by_name; /* tcp://localhost:IPORT */
		int ok;
		const char *log;
	} cases[] = {
		{certs.server, wrong, 0, 0, "did not verify: hostname mismatch"},
		{self, ca, 0, 0,
		 "did not verify: self-signed certificate"},
		{self, "{verify: false}", 0, 1, "tls verify: false"},
		{certs.server, ca, 1, 1, "reason=done"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		uint16_t oport = st_free_port(), iport = st_free_port();
		char *in = st_fmt("tcp://127.0.0.1:%u", iport);
		char *up = cases[i].by_name
				   ? st_fmt("tcp://localhost:%u", iport)
				   : NULL;
		char *yaml = chain_conf(oport, in, up, eport, cases[i].server,
					cases[i].tls);
		st_daemon *d = st_daemon_start(yaml);

		if (cases[i].ok)
			st_echo_once(oport, "through verified tls");
		else
			expect_refused(oport);
		if (st_daemon_wait_log(d, cases[i].log, 1, ST_WAIT_MS) != 0 ||
		    (!cases[i].ok &&
		     st_daemon_wait_log(d, "reason=upstream-tls", 1,
					ST_WAIT_MS) != 0)) {
			st_print_logs();
			fail_msg("case %zu: no '%s' in the log", i,
				 cases[i].log);
		}
		st_daemon_stop(d);
		free(yaml);
		free(up);
		free(in);
	}
	st_cert_free(self);
	st_server_stop(srv);
	free(ca);
	free(wrong);
}

/* ---- mTLS: client certificates and allow ----------------------------------- */

/* A TLS session with cert (NULL: none) to lport: 1 when an echo goes
 * through it, 0 when the session is refused (in the handshake or, in TLS
 * 1.3, just after the client's end of it). */
static int mtls_echo(uint16_t lport, const st_cert *cert)
{
	SSL_CTX *ctx = st_tls_client_ctx(certs.ca, cert, 0, 0);
	st_sock fd = st_connect_tcp_retry(lport, ST_WAIT_MS);
	char why[256], buf[16];
	SSL *ssl;
	int ok = 0;

	assert_true(fd != ST_BAD_SOCK);
	ssl = st_tls_handshake(ctx, fd, "localhost", why, sizeof why);
	if (ssl != NULL) {
		uint64_t end = st_now_ms() + ST_WAIT_MS;
		int n = 0;

		if (SSL_write(ssl, "ping", 4) == 4) {
			while (n <= 0 && st_now_ms() < end) {
				n = SSL_read(ssl, buf, sizeof buf);
				if (n <= 0 && SSL_get_error(ssl, n) !=
						      SSL_ERROR_WANT_READ)
					break;
				if (n <= 0)
					st_sleep_ms(10);
			}
			ok = n == 4 && memcmp(buf, "ping", 4) == 0;
		}
		/* An orderly end: close_notify, and the peer's back. */
		if (ok && SSL_shutdown(ssl) >= 0) {
			while (st_now_ms() < end) {
				n = SSL_read(ssl, buf, sizeof buf);
				if (n <= 0 && SSL_get_error(ssl, n) !=
						      SSL_ERROR_WANT_READ)
					break;
				st_sleep_ms(10);
			}
		}
		SSL_free(ssl);
	}
	st_close(fd);
	SSL_CTX_free(ctx);
	return ok;
}

/*
 * verify_client: required with allow by cn, dns and uri: clients admitted
 * by each; refused, each counted and logged with its reason: a
 * certificate outside allow, one from another CA, an expired one, none.
 * A refused subject with control characters reaches the log escaped.
 */
static void test_mtls_allow(void **state)
{
	uint16_t lport = st_free_port(), aport = st_free_port(), uport;
	st_server *srv = st_server_start(st_listen_tcp(&uport, 16), ST_ECHO, 0);
	st_cert *by_dns = st_cert_make(
		"by-dns", &(st_cert_opts){.cn = "someone",
					  .dns = "Deploy.Example.com",
					  .issuer = certs.ca});
	st_cert *by_uri = st_cert_make(
		"by-uri", &(st_cert_opts){.cn = "someone-else",
					  .uri = "spiffe://test/deploy",
					  .issuer = certs.ca});
	st_cert *stranger = st_cert_make(
		"stranger", &(st_cert_opts){.cn = "evil\x1b[2Jname",
					    .dns = "ci.example.com.evil",
					    .issuer = certs.ca});
	st_cert *old = st_cert_make(
		"old-client", &(st_cert_opts){.cn = "ci-runner",
					      .issuer = certs.ca,
					      .not_before_days = -30,
					      .not_after_days = -1});
	char *more = st_fmt("        client_ca: %s\n"
			    "        verify_client: required\n"
			    "        allow:\n"
			    "          cn: [ci-runner]\n"
			    "          dns: [deploy.example.com]\n"
			    "          uri: [\"spiffe://test/deploy\"]\n",
			    certs.ca->cert_path);
	char *route = terminate_conf(lport, uport, more);
	char *yaml = st_fmt("admin: %u\n%s", aport, route);
	st_daemon *d = st_daemon_start(yaml);
	char *log;

	(void)state;
	assert_int_equal(mtls_echo(lport, certs.client), 1); /* cn */
	assert_int_equal(mtls_echo(lport, by_dns), 1);       /* dns */
	assert_int_equal(mtls_echo(lport, by_uri), 1);       /* uri */
	assert_int_equal(mtls_echo(lport, stranger), 0);
	assert_int_equal(mtls_echo(lport, certs.other_client), 0);
	assert_int_equal(mtls_echo(lport, old), 0);
	assert_int_equal(mtls_echo(lport, NULL), 0);

	assert_int_equal(st_daemon_wait_log(d, "reason=tls-not-allowed", 1,
					    ST_WAIT_MS),
			 0);
	assert_int_equal(st_daemon_wait_log(d, "reason=tls-verify-failed", 2,
					    ST_WAIT_MS),
			 0);
	assert_int_equal(st_daemon_wait_log(d, "reason=tls-no-cert", 1,
					    ST_WAIT_MS),
			 0);
	st_wait_metric(aport, 4, "sluice_route_tls_refused_total{route=\"tls\"}");
	assert_int_equal(st_daemon_log_count(d, "reason=done"), 3);
	/* The first refusal's line names the subject, escaped. */
	assert_int_equal(st_daemon_wait_log(d, "refused: TLS client certificate "
					       "not allowed",
					    1, ST_WAIT_MS),
			 0);
	log = st_daemon_log(d);
	assert_null(strchr(log, '\x1b'));
	/* RFC 2253 text: OpenSSL writes a control character as \1B. */
	assert_non_null(strstr(log, "subject=CN=evil\\1B[2Jname"));
	/* The access log of each admitted session: version, cipher, SNI,
	 * the subject, the name allow admitted it by, the fingerprint. */
	assert_non_null(strstr(log, " tls=TLSv1.3 cipher=TLS_"));
	assert_non_null(strstr(log, "sni=\"localhost\" subject=\"CN=ci-runner\" "
				    "san=\"cn:ci-runner\" sha256="));
	assert_non_null(strstr(log, "san=\"dns:Deploy.Example.com\""));
	assert_non_null(strstr(log, "san=\"uri:spiffe://test/deploy\""));
	free(log);
	/* Only the admitted sessions reached the upstream. */
	assert_int_equal(st_server_accepted(srv), 3);
	stop_both(d, srv);
	st_cert_free(by_dns);
	st_cert_free(by_uri);
	st_cert_free(stranger);
	st_cert_free(old);
	free(more);
	free(route);
	free(yaml);
}

/*
 * The JSON access log of a TLS session: a "tls" object; a name the client
 * chose (SNI with a quote and an escape character) stays one JSON string,
 * and in the text format one quoted value.
 */
static void test_access_log_tls(void **state)
{
	uint16_t lport = st_free_port(), uport;
	st_server *srv = st_server_start(st_listen_tcp(&uport, 16), ST_ECHO, 0);
	char *file = st_fmt("%s/access.json", st_tmpdir());
	char *route = terminate_conf(lport, uport, NULL);
	char *yaml = st_fmt("access_log: {to: %s, format: json}\n%s", file,
			    route);
	SSL_CTX *ctx = st_tls_client_ctx(NULL, NULL, 0, 0);
	st_daemon *d = st_daemon_start(yaml);
	st_sock fd = st_connect_tcp_retry(lport, ST_WAIT_MS);
	char why[256], *json = NULL;
	uint64_t end = st_now_ms() + ST_WAIT_MS;
	SSL *ssl;

	(void)state;
	assert_true(fd != ST_BAD_SOCK);
	/* A name no verification would pass: this client verifies none. */
	ssl = st_tls_handshake(ctx, fd, "ev\"il\x1b.example", why,
			       sizeof why);
	if (ssl == NULL)
		fail_msg("handshake: %s", why);
	st_tls_exchange(ssl, fd, 3, 3, 1024);
	SSL_free(ssl);
	st_close(fd);
	while (st_now_ms() < end) {
		free(json);
		json = st_read_file(file);
		if (json != NULL && strstr(json, "\"reason\"") != NULL)
			break;
		st_sleep_ms(50);
	}
	assert_non_null(json);
	if (strstr(json, ",\"tls\":{\"version\":\"TLSv1.3\",\"cipher\":\"TLS_") ==
		    NULL ||
	    strstr(json, "\"sni\":\"ev\\\\x22il\\\\x1b.example\"") == NULL ||
	    strchr(json, '\x1b') != NULL)
		fail_msg("access log: %s", json);
	free(json);
	stop_both(d, srv);
	SSL_CTX_free(ctx);
	free(file);
	free(route);
	free(yaml);
}

/* ---- send_proxy: v2 with the TLS facts ------------------------------------ */

/* The v2 headers an upstream got, whole (up to 8), under lock. */
struct pp2_seen {
	pthread_mutex_t lock;
	unsigned n;
	unsigned char hdr[8][1100];
	size_t len[8];
};

/* Take a v2 header (16 bytes, then its length's worth), note it, echo
 * the rest. */
static void pp2_echo(st_sock c, void *arg)
{
	struct pp2_seen *seen = arg;
	unsigned char h[1100];
	size_t dlen;

	st_recv_all(c, h, 16, ST_WAIT_MS);
	dlen = (size_t)h[14] << 8 | h[15];
	if (dlen > sizeof h - 16)
		return; /* the test sees fewer headers than it expects */
	st_recv_all(c, h + 16, dlen, ST_WAIT_MS);
	pthread_mutex_lock(&seen->lock);
	if (seen->n < 8) {
		memcpy(seen->hdr[seen->n], h, 16 + dlen);
		seen->len[seen->n++] = 16 + dlen;
	}
	pthread_mutex_unlock(&seen->lock);
	st_echo_rest(c);
}

/* What a decoder finds in a header's TLVs (this test's own reading of
 * doc/proxy-protocol.txt 2.2, not sluice's code). */
struct pp2_tlvs {
	char authority[300], version[80], cn[300], cipher[80], alpn[80];
	int has_ssl, has_cn, has_authority, has_alpn;
	unsigned client;
	uint32_t verify;
};

static void tlv_text(char *out, size_t cap, const unsigned char *v, size_t n)
{
	assert_true(n < cap);
	memcpy(out, v, n);
	out[n] = '\0';
}

static void pp2_decode(const unsigned char *h, size_t len,
		       struct pp2_tlvs *out)
{
	static const unsigned char sig[12] = {0x0d, 0x0a, 0x0d, 0x0a,
					      0x00, 0x0d, 0x0a, 0x51,
					      0x55, 0x49, 0x54, 0x0a};
	size_t alen, p, end;

	memset(out, 0, sizeof *out);
	assert_true(len >= 16);
	assert_memory_equal(h, sig, 12);
	assert_int_equal(h[12], 0x21); /* v2, PROXY */
	alen = h[13] >> 4 == 1 ? 12 : h[13] >> 4 == 2 ? 36 : h[13] >> 4 == 3 ? 216 : 0;
	end = 16 + ((size_t)h[14] << 8 | h[15]);
	assert_int_equal(end, len);
	for (p = 16 + alen; p < end;) {
		unsigned type = h[p];
		size_t n;

		assert_true(end - p >= 3);
		n = (size_t)h[p + 1] << 8 | h[p + 2];
		assert_true(end - p - 3 >= n);
		if (type == 0x01) {
			out->has_alpn = 1;
			tlv_text(out->alpn, sizeof out->alpn, h + p + 3, n);
		} else if (type == 0x02) {
			out->has_authority = 1;
			tlv_text(out->authority, sizeof out->authority,
				 h + p + 3, n);
		} else if (type == 0x20) {
			const unsigned char *v = h + p + 3;
			size_t q = 5;

			assert_true(n >= 5);
			out->has_ssl = 1;
			out->client = v[0];
			out->verify = (uint32_t)v[1] << 24 |
				      (uint32_t)v[2] << 16 |
				      (uint32_t)v[3] << 8 | v[4];
			while (q < n) {
				size_t m;

				assert_true(n - q >= 3);
				m = (size_t)v[q + 1] << 8 | v[q + 2];
				assert_true(n - q - 3 >= m);
				if (v[q] == 0x21)
					tlv_text(out->version,
						 sizeof out->version,
						 v + q + 3, m);
				else if (v[q] == 0x22) {
					out->has_cn = 1;
					tlv_text(out->cn, sizeof out->cn,
						 v + q + 3, m);
				} else if (v[q] == 0x23)
					tlv_text(out->cipher,
						 sizeof out->cipher, v + q + 3,
						 m);
				q += 3 + m;
			}
		}
		p += 3 + n;
	}
}

/*
 * send_proxy: v2 behind a TLS listener: the upstream's header carries
 * PP2_TYPE_AUTHORITY (the client's SNI) and PP2_TYPE_SSL: for a client
 * with a verified certificate the flags SSL, CERT_CONN and CERT_SESS,
 * verify 0, the version, the certificate's CN and the cipher; for one
 * without, the flag SSL alone, verify not 0, no CN.  A cleartext route's
 * header has no TLS TLV.
 */
static void test_send_proxy_tls(void **state)
{
	uint16_t lport = st_free_port(), plain = st_free_port(), uport;
	struct pp2_seen *seen = calloc(1, sizeof *seen);
	st_server *srv;
	char *route, *yaml;
	st_daemon *d;
	struct pp2_tlvs t;
	SSL_CTX *ctx;
	st_sock fd;
	SSL *ssl;

	(void)state;
	assert_non_null(seen);
	pthread_mutex_init(&seen->lock, NULL);
	srv = st_server_start_fn(st_listen_tcp(&uport, 16), pp2_echo, seen);
	route = st_fmt("  - name: tls\n"
		       "    listen:\n"
		       "      address: tcp://127.0.0.1:%u\n"
		       "      tls: {cert: %s, key: %s, client_ca: %s,\n"
		       "            verify_client: optional, allow: any,\n"
		       "            alpn: [h2, http/1.1]}\n"
		       "    upstreams:\n"
		       "      - {address: tcp://127.0.0.1:%u, send_proxy: v2}\n"
		       "  - name: plain\n"
		       "    listen: tcp://127.0.0.1:%u\n"
		       "    upstreams:\n"
		       "      - {address: tcp://127.0.0.1:%u, send_proxy: v2}\n",
		       lport, certs.server->cert_path, certs.server->key_path,
		       certs.ca->cert_path, uport, plain, uport);
	yaml = st_fmt("routes:\n%s", route);
	d = st_daemon_start(yaml);

	/* With a client certificate, and ALPN: sluice's preference (h2)
	 * over the client's. */
	ctx = st_tls_client_ctx(certs.ca, certs.client, 0, 0);
	assert_int_equal(SSL_CTX_set_alpn_protos(
				 ctx, (const unsigned char *)"\x08http/1.1\x02h2",
				 12),
			 0);
	ssl = tls_open(ctx, lport, &fd);
	{
		const unsigned char *a;
		unsigned int an;

		SSL_get0_alpn_selected(ssl, &a, &an);
		assert_int_equal(an, 2);
		assert_memory_equal(a, "h2", 2);
	}
	st_tls_exchange(ssl, fd, 5, 5, 4096);
	SSL_free(ssl);
	st_close(fd);
	SSL_CTX_free(ctx);
	/* Without one. */
	ctx = st_tls_client_ctx(certs.ca, NULL, 0, 0);
	ssl = tls_open(ctx, lport, &fd);
	st_tls_exchange(ssl, fd, 6, 6, 4096);
	SSL_free(ssl);
	st_close(fd);
	SSL_CTX_free(ctx);
	st_echo_once(plain, "cleartext");
	assert_int_equal(st_daemon_wait_log(d, "reason=done", 3, ST_WAIT_MS),
			 0);

	pthread_mutex_lock(&seen->lock);
	assert_int_equal(seen->n, 3);
	pp2_decode(seen->hdr[0], seen->len[0], &t);
	assert_true(t.has_authority && t.has_ssl && t.has_cn);
	assert_string_equal(t.authority, "localhost");
	assert_int_equal(t.client, 0x07); /* SSL, CERT_CONN, CERT_SESS */
	assert_int_equal(t.verify, 0);
	assert_string_equal(t.version, "TLSv1.3");
	assert_string_equal(t.cn, "ci-runner");
	assert_true(strncmp(t.cipher, "TLS_", 4) == 0);
	assert_true(t.has_alpn);
	assert_string_equal(t.alpn, "h2");

	pp2_decode(seen->hdr[1], seen->len[1], &t);
	assert_true(t.has_authority && t.has_ssl && !t.has_cn && !t.has_alpn);
	assert_int_equal(t.client, 0x01);
	assert_int_not_equal(t.verify, 0);
	assert_string_equal(t.version, "TLSv1.3");

	pp2_decode(seen->hdr[2], seen->len[2], &t);
	assert_false(t.has_ssl || t.has_authority || t.has_alpn);
	pthread_mutex_unlock(&seen->lock);
	assert_int_equal(st_daemon_log_count(d, " alpn=\"h2\""), 1);

	stop_both(d, srv);
	pthread_mutex_destroy(&seen->lock);
	free(seen);
	free(route);
	free(yaml);
}

/* ---- session tickets ------------------------------------------------------- */

/*
 * One handshake between a client of cctx and the server context sctx, in
 * memory (a BIO pair), resuming sess when not NULL; a byte from the
 * server then makes the client take its tickets.  Returns 1 when the
 * session was resumed, 0 when it was a full handshake; *out (if not NULL)
 * gets the client's session to resume next time.
 */
static int mem_session(SSL_CTX *sctx, SSL_CTX *cctx, SSL_SESSION *sess,
		       SSL_SESSION **out)
{
	SSL *srv = SSL_new(sctx), *cli = SSL_new(cctx);
	BIO *bs, *bc;
	int sdone = 0, cdone = 0, reused;
	char b;

	assert_true(srv != NULL && cli != NULL);
	assert_int_equal(BIO_new_bio_pair(&bs, 0, &bc, 0), 1);
	SSL_set_bio(srv, bs, bs);
	SSL_set_bio(cli, bc, bc);
	SSL_set_accept_state(srv);
	SSL_set_connect_state(cli);
	SSL_set_tlsext_host_name(cli, "localhost");
	if (sess != NULL)
		assert_int_equal(SSL_set_session(cli, sess), 1);
	for (int i = 0; i < 100 && !(sdone && cdone); i++) {
		int r;

		if (!cdone && (r = SSL_do_handshake(cli)) != 1 &&
		    SSL_get_error(cli, r) != SSL_ERROR_WANT_READ)
			fail_msg("client handshake: %s",
				 ERR_reason_error_string(ERR_get_error()));
		cdone = r == 1 || cdone;
		if (!sdone && (r = SSL_do_handshake(srv)) != 1 &&
		    SSL_get_error(srv, r) != SSL_ERROR_WANT_READ)
			fail_msg("server handshake: %s",
				 ERR_reason_error_string(ERR_get_error()));
		sdone = r == 1 || sdone;
	}
	assert_true(sdone && cdone);
	assert_int_equal(SSL_write(srv, "x", 1), 1);
	assert_int_equal(SSL_read(cli, &b, 1), 1);
	reused = SSL_session_reused(cli);
	assert_int_equal(SSL_session_reused(srv), reused);
	if (out != NULL) {
		*out = SSL_get1_session(cli);
		assert_true(SSL_SESSION_is_resumable(*out));
	}
	/* An orderly end: OpenSSL drops a session ended without one. */
	(void)SSL_shutdown(cli);
	(void)SSL_shutdown(srv);
	SSL_free(cli);
	SSL_free(srv);
	return reused;
}

/*
 * A listener's tickets, on its own context (no daemon): a session resumes
 * with its ticket, in TLS 1.3 and 1.2, with and without client
 * certificates (a listener that verifies clients needs a session ID
 * context: without one OpenSSL refuses every resumption there); after a
 * rotation the previous key still opens a ticket, after a second one it
 * does not and the handshake is a full one; a ticket made after the
 * first rotation still resumes after the second.
 */
static void test_tickets_rotate(void **state)
{
	sl_tls_listen_conf t;
	char err[512];

	(void)state;
	for (int mtls = 0; mtls < 2; mtls++)
		for (int v = TLS1_2_VERSION; v <= TLS1_3_VERSION; v++) {
			SSL_SESSION *first, *later, *again;
			SSL_CTX *cctx = st_tls_client_ctx(
				certs.ca, mtls ? certs.client : NULL, v, v);
			sl_tls_ctx *c;
			SSL_CTX *sctx;

			memset(&t, 0, sizeof t);
			t.on = 1;
			t.cert = certs.server->cert_path;
			t.key = certs.server->key_path;
			t.min_version = TLS1_2_VERSION;
			t.tickets = 1;
			if (mtls) {
				t.client_ca = certs.ca->cert_path;
				t.verify_client = SL_TLS_VERIFY_REQUIRED;
			}
			c = sl_tls_ctx_server(&t, err, sizeof err);
			if (c == NULL)
				fail_msg("context: %s", err);
			sctx = sl_tls_ctx_openssl(c);

			assert_int_equal(mem_session(sctx, cctx, NULL, &first),
					 0);
			assert_int_equal(mem_session(sctx, cctx, first, NULL),
					 1);
			sl_tls_ctx_rotate_tickets(c);
			/* The previous key opens it, and a new ticket comes
			 * with the current one. */
			assert_int_equal(mem_session(sctx, cctx, first, &later),
					 1);
			sl_tls_ctx_rotate_tickets(c);
			/* first's key is gone: a full handshake. */
			assert_int_equal(mem_session(sctx, cctx, first, &again),
					 0);
			assert_int_equal(mem_session(sctx, cctx, later, NULL),
					 1);
			SSL_SESSION_free(first);
			SSL_SESSION_free(later);
			SSL_SESSION_free(again);
			sl_tls_ctx_unref(c);
			SSL_CTX_free(cctx);
		}
}

/* A TLS session to lport (cert as the client's, sess to resume or NULL):
 * an echo through it; 1 when it resumed.  *out: its session. */
static int resume_echo(uint16_t lport, SSL_CTX *ctx, SSL_SESSION *sess,
		       SSL_SESSION **out)
{
	st_sock fd = st_connect_tcp_retry(lport, ST_WAIT_MS);
	char why[256];
	SSL *ssl;
	int reused;

	assert_true(fd != ST_BAD_SOCK);
	ssl = st_tls_new(ctx, fd, "localhost");
	assert_non_null(ssl);
	if (sess != NULL)
		assert_int_equal(SSL_set_session(ssl, sess), 1);
	ssl = st_tls_finish(ssl, fd, why, sizeof why);
	if (ssl == NULL)
		fail_msg("handshake: %s", why);
	st_tls_exchange(ssl, fd, 8, 8, 64 * 1024);
	reused = SSL_session_reused(ssl);
	if (out != NULL)
		*out = SSL_get1_session(ssl);
	SSL_free(ssl);
	st_close(fd);
	return reused;
}

/*
 * Against the daemon, through a listener that verifies clients (allow by
 * CN): a second session resumes with the ticket of the first, and is
 * admitted by allow as the first was (the access log names the CN for
 * both); after a reload (new contexts, new keys) the same ticket gets a
 * full handshake, which works.
 */
static void test_resume(void **state)
{
	uint16_t lport = st_free_port(), uport;
	st_server *srv = st_server_start(st_listen_tcp(&uport, 16), ST_ECHO, 0);
	char *more = st_fmt("        client_ca: %s\n"
			    "        verify_client: required\n"
			    "        allow: {cn: [ci-runner]}\n",
			    certs.ca->cert_path);
	char *yaml = terminate_conf(lport, uport, more);
	SSL_CTX *ctx = st_tls_client_ctx(certs.ca, certs.client, 0, 0);
	st_daemon *d = st_daemon_start(yaml);
	SSL_SESSION *first, *second;

	(void)state;
	assert_int_equal(resume_echo(lport, ctx, NULL, &first), 0);
	assert_int_equal(resume_echo(lport, ctx, first, &second), 1);
	assert_int_equal(st_daemon_wait_log(d, "san=\"cn:ci-runner\"", 2,
					    ST_WAIT_MS),
			 0);
	st_daemon_signal(d, SIGHUP);
	assert_int_equal(st_daemon_wait_log(d, "reloaded ", 1, ST_WAIT_MS), 0);
	assert_int_equal(resume_echo(lport, ctx, second, NULL), 0);
	assert_int_equal(st_daemon_wait_log(d, "reason=done", 3, ST_WAIT_MS),
			 0);
	SSL_SESSION_free(first);
	SSL_SESSION_free(second);
	stop_both(d, srv);
	SSL_CTX_free(ctx);
	free(more);
	free(yaml);
}

/* ---- real clients and servers: curl, openssl s_server ---------------------- */

/* A tiny HTTP/1.0 responder: the request's head, then one answer, then
 * the end. */
static void http_hello(st_sock c, void *arg)
{
	static const char answer[] = "HTTP/1.0 200 OK\r\n"
				     "Content-Type: text/plain\r\n"
				     "Content-Length: 15\r\n\r\n"
				     "hello over tls\n";
	char req[4096];
	size_t len = 0;

	(void)arg;
	while (len < sizeof req - 1) {
		ssize_t n = st_recv_some(c, req + len, sizeof req - 1 - len,
					 ST_WAIT_MS);

		if (n <= 0)
			return;
		len += (size_t)n;
		req[len] = '\0';
		if (strstr(req, "\r\n\r\n") != NULL)
			break;
	}
	if (strncmp(req, "GET /hello ", 11) != 0)
		return;
	(void)st_send_some(c, answer, sizeof answer - 1);
	(void)st_try_shutdown_wr(c);
	while (st_recv_some(c, req, sizeof req, ST_WAIT_MS) > 0)
		;
}

/*
 * Session resumption toward an upstream (session_reuse, default on), as
 * HAProxy does toward its servers: the second and third connections
 * through "front" offer the session the one before left, and "back"
 * resumes it; both access logs say so (up_resumed=1, resumed=1).  With
 * session_reuse: false, or a listener with session_tickets: false, none
 * resumes.
 */
static void upstream_resume(const char *up_more, const char *back_more,
			    unsigned want)
{
	uint16_t fport = st_free_port(), bport = st_free_port(), eport;
	st_server *srv = st_server_start(st_listen_tcp(&eport, 16), ST_ECHO, 0);
	char *yaml = st_fmt("routes:\n"
			    "  - name: front\n"
			    "    listen: tcp://127.0.0.1:%u\n"
			    "    upstreams:\n"
			    "      - address: tcp://localhost:%u\n"
			    "        tls: {ca: %s%s}\n"
			    "  - name: back\n"
			    "    listen:\n"
			    "      address: tcp://127.0.0.1:%u\n"
			    "      tls: {cert: %s, key: %s%s}\n"
			    "    upstreams: tcp://127.0.0.1:%u\n",
			    fport, bport, certs.ca->cert_path, up_more, bport,
			    certs.server->cert_path, certs.server->key_path,
			    back_more, eport);
	st_daemon *d = st_daemon_start(yaml);

	for (unsigned i = 1; i <= 3; i++) {
		st_echo_once(fport, "resume me");
		/* Both sessions over before the next: the ticket is kept. */
		assert_int_equal(st_daemon_wait_log(d, "reason=done", 2 * i,
						    ST_WAIT_MS),
				 0);
	}
	if (strstr(up_more, "alpn") != NULL &&
	    st_daemon_log_count(d, " alpn=\"h2\"") != 3)
		fail_msg("the upstream's ALPN (h2) did not reach back:\n%s",
			 st_daemon_log(d));
	if (st_daemon_log_count(d, " up_tls=TLSv1.3 ") != 3 ||
	    st_daemon_log_count(d, " up_resumed=1") != want ||
	    st_daemon_log_count(d, " resumed=1") != want) {
		char *log = st_daemon_log(d);

		fprintf(stderr, "%s", log);
		fail_msg("want %u resumed of 3 (%s, %s): %u and %u", want,
			 up_more, back_more,
			 st_daemon_log_count(d, " up_resumed=1"),
			 st_daemon_log_count(d, " resumed=1"));
	}
	stop_both(d, srv);
	free(yaml);
}

static void test_upstream_resume(void **state)
{
	(void)state;
	upstream_resume(", alpn: [h2]", ", alpn: [http/1.1, h2]", 2);
	upstream_resume(", session_reuse: false", "", 0);
	upstream_resume("", ", session_tickets: false", 0);
}

/*
 * curl as the client of a listener that verifies clients: it verifies
 * sluice's certificate against the test CA by name, shows its own, and
 * gets the answer of the HTTP server behind; without a certificate it is
 * refused.
 */
static void test_curl(void **state)
{
	uint16_t lport = st_free_port(), uport;
	st_server *srv = st_server_start_fn(st_listen_tcp(&uport, 16),
					    http_hello, NULL);
	char *more = st_fmt("        client_ca: %s\n"
			    "        verify_client: required\n"
			    "        allow: {cn: [ci-runner]}\n",
			    certs.ca->cert_path);
	char *yaml = terminate_conf(lport, uport, more);
	st_daemon *d = st_daemon_start(yaml);
	char *url = st_fmt("https://localhost:%u/hello", lport);
	char *resolve = st_fmt("localhost:%u:127.0.0.1", lport);
	char *out;
	int rc;

	(void)state;
	rc = st_run_cmd(&out, "curl", "-sS", "--max-time", "10", "--cacert",
			certs.ca->cert_path, "--cert", certs.client->cert_path,
			"--key", certs.client->key_path, "--resolve", resolve,
			url, NULL);
	if (rc == 127)
		skip(); /* no curl here */
	if (rc != 0 || strcmp(out, "hello over tls\n") != 0)
		fail_msg("curl exited %d:\n%s", rc, out);
	free(out);
	rc = st_run_cmd(&out, "curl", "-sS", "--max-time", "10", "--cacert",
			certs.ca->cert_path, "--resolve", resolve, url, NULL);
	if (rc == 0 || strstr(out, "hello over tls") != NULL)
		fail_msg("curl without a certificate exited %d:\n%s", rc, out);
	free(out);
	assert_int_equal(st_daemon_wait_log(d, "reason=tls-no-cert", 1,
					    ST_WAIT_MS),
			 0);
	assert_int_equal(st_daemon_wait_log(d, "san=\"cn:ci-runner\"", 1,
					    ST_WAIT_MS),
			 0);
	stop_both(d, srv);
	free(url);
	free(resolve);
	free(more);
	free(yaml);
}

/*
 * openssl s_server as the upstream, requiring a client certificate:
 * sluice verifies it by name against the test CA, shows its own, and the
 * bytes go through both ways (-rev answers each line reversed).
 */
static void test_s_server_upstream(void **state)
{
	uint16_t lport = st_free_port(), sport = st_free_port();
	char *log = st_fmt("%s/s_server.log", st_tmpdir());
	char *cmd = st_fmt("timeout 30 openssl s_server -accept 127.0.0.1:%u "
			   "-cert %s -key %s -Verify 1 -CAfile %s -naccept 1 "
			   "-rev </dev/null >%s 2>&1 &",
			   sport, certs.server->cert_path,
			   certs.server->key_path, certs.ca->cert_path, log);
	char *yaml = st_fmt("routes:\n"
			    "  - name: out\n"
			    "    listen: tcp://127.0.0.1:%u\n"
			    "    upstreams:\n"
			    "      - address: tcp://127.0.0.1:%u\n"
			    "        tls: {ca: %s, server_name: localhost,\n"
			    "              cert: %s, key: %s}\n",
			    lport, sport, certs.ca->cert_path,
			    certs.client->cert_path, certs.client->key_path);
	uint64_t end = st_now_ms() + ST_WAIT_MS;
	char *out = NULL, back[14];
	st_daemon *d;
	st_sock c;

	(void)state;
	if (st_run_cmd(&out, "sh", "-c", "command -v openssl", NULL) != 0) {
		free(out);
		skip();
	}
	free(out);
	assert_int_equal(st_run_cmd(&out, "sh", "-c", cmd, NULL), 0);
	free(out);
	out = NULL;
	/* Ready when it says ACCEPT (a probe would take its one accept). */
	while (st_now_ms() < end) {
		free(out);
		out = st_read_file(log);
		if (out != NULL && strstr(out, "ACCEPT") != NULL)
			break;
		st_sleep_ms(50);
	}
	assert_true(out != NULL && strstr(out, "ACCEPT") != NULL);
	free(out);
	d = st_daemon_start(yaml);
	c = st_connect_tcp_retry(lport, ST_WAIT_MS);
	assert_true(c != ST_BAD_SOCK);
	st_send_all(c, "hello sluice\n", 13);
	st_recv_all(c, back, 13, ST_WAIT_MS);
	assert_memory_equal(back, "eciuls olleh\n", 13);
	st_close(c);
	st_daemon_stop(d);
	out = st_read_file(log);
	assert_non_null(out);
	if (strstr(out, "CN=ci-runner") == NULL &&
	    strstr(out, "CN = ci-runner") == NULL)
		fail_msg("s_server saw no client certificate:\n%s", out);
	free(out);
	free(log);
	free(cmd);
	free(yaml);
}

/* ---- many sessions ------------------------------------------------------- */

#define MANY 1000

/*
 * 1,000 TLS sessions open at once through one listener (made one after
 * the other, all held): the route counts 1,000 active, every one echoes
 * its own line, and each ends in order (close_notify both ways) as done.
 * Bounded: each handshake within ST_WAIT_MS, the whole within 5 minutes.
 */
static void test_many_sessions(void **state)
{
	uint16_t lport = st_free_port(), aport = st_free_port(), uport;
	st_server *srv = st_server_start(st_listen_tcp(&uport, 128), ST_ECHO,
					 0);
	char *route = terminate_conf(lport, uport, NULL);
	char *yaml = st_fmt("admin: %u\n%s", aport, route);
	SSL_CTX *ctx = st_tls_client_ctx(certs.ca, NULL, 0, 0);
	SSL **ssl = calloc(MANY, sizeof *ssl);
	st_sock *fd = calloc(MANY, sizeof *fd);
	uint64_t end = st_now_ms() + 300000;
	st_daemon *d;

	(void)state;
	assert_true(ssl != NULL && fd != NULL);
	d = st_daemon_start(yaml);
	for (int i = 0; i < MANY; i++) {
		ssl[i] = tls_open(ctx, lport, &fd[i]);
		assert_true(st_now_ms() < end);
	}
	st_wait_metric(aport, MANY,
		       "sluice_route_sessions_active{route=\"tls\"}");
	for (int i = 0; i < MANY; i++) {
		char line[32], back[32];
		int n = snprintf(line, sizeof line, "session %04d\n", i), got = 0;

		assert_int_equal(SSL_write(ssl[i], line, n), n);
		while (got < n && st_now_ms() < end) {
			int r = SSL_read(ssl[i], back + got, n - got);

			if (r > 0)
				got += r;
			else if (SSL_get_error(ssl[i], r) == SSL_ERROR_WANT_READ)
				st_sleep_ms(1);
			else
				fail_msg("session %d: read failed", i);
		}
		assert_int_equal(got, n);
		assert_memory_equal(back, line, (size_t)n);
	}
	for (int i = 0; i < MANY; i++) {
		(void)SSL_shutdown(ssl[i]); /* close_notify, then FIN */
		SSL_free(ssl[i]);
		st_close(fd[i]);
	}
	assert_int_equal(st_daemon_wait_log(d, "reason=", MANY, 60000), 0);
	assert_int_equal(st_daemon_log_count(d, "reason=done"), MANY);
	st_wait_metric(aport, MANY,
		       "sluice_tls_handshakes_total{route=\"tls\","
		       "side=\"client\",result=\"ok\"}");
	stop_both(d, srv);
	SSL_CTX_free(ctx);
	free(ssl);
	free(fd);
	free(route);
	free(yaml);
}

/* ---- metrics ------------------------------------------------------------- */

/*
 * The TLS series of /metrics: handshakes by side and result, one client
 * for each result of a listener (ok, no-cert, verify-failed, not-allowed,
 * timeout, protocol) and one upstream for each result sluice's own
 * handshakes can have (ok, verify-failed, timeout, protocol); the seconds
 * until the listener's certificate expires, by file; and a certificate
 * that did not load at a reload, counted.
 */
static void test_tls_metrics(void **state)
{
	uint16_t mport = st_free_port(), sport = st_free_port();
	uint16_t aport = st_free_port(), uport, hport;
	uint16_t bad = st_free_port(), good = st_free_port();
	uint16_t echo = st_free_port(), hold = st_free_port();
	st_server *srv = st_server_start(st_listen_tcp(&uport, 16), ST_ECHO, 0);
	st_server *silent = st_server_start(st_listen_tcp(&hport, 16), ST_HOLD,
					    0);
	st_cert *stranger = st_cert_make(
		"stranger2", &(st_cert_opts){.cn = "stranger",
					     .issuer = certs.ca});
	char *pem = NULL, *key = NULL, *yaml, *junk, *series;
	st_daemon *d;
	st_sock quiet, junky;
	long long left;

	(void)state;
	put_live(certs.soon, &pem, &key);
	yaml = st_fmt(
		"admin: %u\n"
		"routes:\n"
		"  - name: m\n"
		"    listen:\n"
		"      address: tcp://127.0.0.1:%u\n"
		"      tls: {cert: %s, key: %s, client_ca: %s,\n"
		"            verify_client: required, allow: {cn: [ci-runner]},\n"
		"            handshake_timeout: 1s}\n"
		"    upstreams: tcp://127.0.0.1:%u\n"
		"  - name: srv\n"
		"    listen:\n"
		"      address: tcp://127.0.0.1:%u\n"
		"      tls: {cert: %s, key: %s}\n"
		"    upstreams: tcp://127.0.0.1:%u\n"
		"  - name: up-bad\n"
		"    listen: tcp://127.0.0.1:%u\n"
		"    upstreams:\n"
		"      - address: tcp://127.0.0.1:%u\n"
		"        tls: {ca: %s, server_name: localhost}\n"
		"  - name: up-good\n"
		"    listen: tcp://127.0.0.1:%u\n"
		"    upstreams:\n"
		"      - address: tcp://127.0.0.1:%u\n"
		"        tls: {ca: %s, server_name: localhost}\n"
		"  - name: up-echo\n"
		"    listen: tcp://127.0.0.1:%u\n"
		"    upstreams:\n"
		"      - address: tcp://127.0.0.1:%u\n"
		"        tls: {ca: %s, server_name: localhost}\n"
		"  - name: up-hold\n"
		"    connect_timeout: 1s\n"
		"    listen: tcp://127.0.0.1:%u\n"
		"    upstreams:\n"
		"      - address: tcp://127.0.0.1:%u\n"
		"        tls: {ca: %s, server_name: localhost}\n",
		aport, mport, pem, key, certs.ca->cert_path, uport, sport,
		certs.server->cert_path, certs.server->key_path, uport, bad,
		sport, certs.other_ca->cert_path, good, sport,
		certs.ca->cert_path, echo, uport, certs.ca->cert_path, hold,
		hport, certs.ca->cert_path);
	d = st_daemon_start(yaml);

	/* The listener's clients. */
	assert_int_equal(mtls_echo(mport, certs.client), 1);
	assert_int_equal(mtls_echo(mport, NULL), 0);
	assert_int_equal(mtls_echo(mport, certs.other_client), 0);
	assert_int_equal(mtls_echo(mport, stranger), 0);
	quiet = st_connect_tcp_retry(mport, ST_WAIT_MS);
	junky = st_connect_tcp(mport);
	assert_true(quiet != ST_BAD_SOCK && junky != ST_BAD_SOCK);
	st_send_all(junky, "GET / HTTP/1.0\r\n\r\n", 18);
	assert_true(ended(quiet));
	assert_true(ended(junky));
	st_close(quiet);
	st_close(junky);
#define SERIES(route, side, result)                                        \
	"sluice_tls_handshakes_total{route=\"" route "\",side=\"" side    \
	"\",result=\"" result "\"}"
	st_wait_metric(aport, 1, SERIES("m", "client", "ok"));
	st_wait_metric(aport, 1, SERIES("m", "client", "no-cert"));
	st_wait_metric(aport, 1, SERIES("m", "client", "verify-failed"));
	st_wait_metric(aport, 1, SERIES("m", "client", "not-allowed"));
	st_wait_metric(aport, 1, SERIES("m", "client", "timeout"));
	st_wait_metric(aport, 1, SERIES("m", "client", "protocol"));
	st_wait_metric(aport, 5, "sluice_route_tls_refused_total{route=\"m\"}");

	/* sluice's own handshakes to its upstreams. */
	st_echo_once(good, "to a verified upstream");
	expect_refused(bad);  /* the server's CA is not the one given */
	expect_refused(echo); /* the ClientHello comes back: not TLS */
	expect_refused(hold); /* no answer within connect_timeout */
	st_wait_metric(aport, 1, SERIES("up-good", "upstream", "ok"));
	st_wait_metric(aport, 1, SERIES("up-bad", "upstream", "verify-failed"));
	st_wait_metric(aport, 1, SERIES("up-echo", "upstream", "protocol"));
	st_wait_metric(aport, 1, SERIES("up-hold", "upstream", "timeout"));
	st_wait_metric(aport, 0, SERIES("up-hold", "upstream", "ok"));
	/* An upstream has no allow and is asked for no certificate. */
	assert_int_equal(st_metric_at(aport, "%s",
				      SERIES("up-good", "upstream", "no-cert")),
			 -1);
	/* A route without a TLS listener has no client series. */
	assert_int_equal(st_metric_at(aport, "%s",
				      SERIES("up-good", "client", "ok")),
			 -1);
#undef SERIES

	/* certs.soon ends in 10 days. */
	series = st_fmt("sluice_tls_cert_expiry_seconds{route=\"m\",file=\"%s\"}",
			pem);
	left = st_metric_at(aport, "%s", series);
	if (left < 10 * 86400 - 3600 || left > 10 * 86400 + 3600)
		fail_msg("%s = %lld, want about %d", series, left, 10 * 86400);
	free(series);
	series = st_fmt("sluice_tls_cert_expiry_seconds{route=\"srv\","
			"file=\"%s\"}",
			certs.server->cert_path);
	assert_true(st_metric_at(aport, "%s", series) > 300 * 86400);
	free(series);

	/* A reload whose certificate does not load: counted, and the
	 * series keeps the certificate that stayed. */
	st_wait_metric(aport, 0, "sluice_tls_reload_refused_total{route=\"m\"}");
	junk = st_write_tmp("live.pem", "not a certificate\n");
	st_daemon_signal(d, SIGHUP);
	assert_int_equal(st_daemon_wait_log(d, "reloaded ", 1, ST_WAIT_MS), 0);
	st_wait_metric(aport, 1, "sluice_tls_reload_refused_total{route=\"m\"}");
	st_wait_metric(aport, 0,
		       "sluice_tls_reload_refused_total{route=\"srv\"}");
	assert_true(st_metric_at(aport,
				 "sluice_tls_cert_expiry_seconds{route=\"m\","
				 "file=\"%s\"}",
				 pem) > 0);

	stop_both(d, srv);
	st_server_stop(silent);
	st_cert_free(stranger);
	free(pem);
	free(key);
	free(junk);
	free(yaml);
}

/* ---- the Windows certificate store ----------------------------------------- */

/* The CA file sltool root-add put in the account's ROOT store, until
 * root-del takes it out again (the teardown does, after a failure). */
static char *os_root_added;

static int os_root_del(void)
{
	int rc = st_tool_wait(st_tool_start(NULL, NULL, "root-del",
					    os_root_added, NULL),
			      ST_WAIT_MS);

	free(os_root_added);
	os_root_added = NULL;
	return rc;
}

static int os_root_teardown(void **state)
{
	if (os_root_added != NULL)
		os_root_del();
	return st_teardown(state);
}

/*
 * An upstream with tls and no ca: sluice.exe trusts the roots of the
 * Windows certificate store (the machine's and the account's ROOT).  A
 * CA of this run's own, not in the store: the handshake toward the
 * upstream fails to verify (upstream-tls, and the warning names
 * OpenSSL's reason).  Once sltool has added the CA to the account's ROOT
 * store and sluice has reloaded (contexts are built at start and
 * reload), bytes flow; once it is removed and sluice reloaded, refused
 * again.  The TLS server is sluice's own second route.
 *
 * Under wine: crypt32 fills the machine's ROOT store from the host's CA
 * bundle, and adding to the account's ROOT store asks nothing.  On
 * Windows that add shows a confirmation dialog, so this test is for wine
 * (other wine tests may run meanwhile: the CA is made here, unique to
 * this run, and taken out again whatever happens).
 */
static void test_windows_root_store(void **state)
{
	uint16_t oport = st_free_port(), iport = st_free_port(), eport;
	st_server *srv;
	st_cert *ca, *server;
	char *cn, *in, *yaml;
	st_daemon *d;

	(void)state;
	ST_WINE_ONLY();
	cn = st_fmt("sluice test root %ld", (long)getpid());
	ca = st_cert_make("os-root-ca", &(st_cert_opts){.cn = cn, .ca = 1});
	server = st_cert_make("os-root-server",
			      &(st_cert_opts){.cn = "localhost",
					      .dns = "localhost",
					      .ip = "127.0.0.1",
					      .issuer = ca});
	srv = st_server_start(st_listen_tcp(&eport, 16), ST_ECHO, 0);
	in = st_fmt("tcp://127.0.0.1:%u", iport);
	yaml = chain_conf(oport, in, NULL, eport, server,
			  "{server_name: localhost}");
	d = st_daemon_start(yaml);

	expect_refused(oport);
	if (st_daemon_wait_log(d, "did not verify: unable to get local "
				  "issuer certificate",
			       1, ST_WAIT_MS) != 0 ||
	    st_daemon_wait_log(d, "reason=upstream-tls", 1, ST_WAIT_MS) != 0) {
		st_print_logs();
		fail_msg("not in the store: no verify failure in the log");
	}

	os_root_added = strdup(ca->cert_path);
	assert_int_equal(st_tool_wait(st_tool_start(NULL, NULL, "root-add",
						    ca->cert_path, NULL),
				      ST_WAIT_MS),
			 0);
	st_daemon_signal(d, SIGHUP);
	assert_int_equal(st_daemon_wait_log(d, "reloaded ", 1, ST_WAIT_MS), 0);
	st_echo_once(oport, "through the Windows store");

	assert_int_equal(os_root_del(), 0);
	st_daemon_signal(d, SIGHUP);
	assert_int_equal(st_daemon_wait_log(d, "reloaded ", 2, ST_WAIT_MS), 0);
	expect_refused(oport);
	if (st_daemon_wait_log(d, "reason=upstream-tls", 2, ST_WAIT_MS) != 0) {
		st_print_logs();
		fail_msg("removed from the store: not refused");
	}
	stop_both(d, srv);
	st_cert_free(ca);
	st_cert_free(server);
	free(cn);
	free(in);
	free(yaml);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		ST_TEST(test_check_good),
		ST_TEST(test_check_files),
		ST_TEST(test_check_warnings),
		ST_TEST(test_terminate_bulk),
		ST_TEST(test_terminate_s_client),
		ST_TEST(test_handshake_timeout),
		ST_TEST(test_truncated),
		ST_TEST(test_versions),
		ST_TEST(test_proxy_then_tls),
		ST_TEST(test_reload_cert),
		ST_TEST(test_originate_bulk),
		ST_TEST(test_originate_verify),
		ST_TEST(test_tls_over_local),
		ST_TEST(test_tls_to_tls),
		ST_TEST(test_mtls_allow),
		ST_TEST(test_access_log_tls),
		ST_TEST(test_upstream_resume),
		ST_TEST(test_tls_metrics),
		ST_TEST(test_send_proxy_tls),
		ST_TEST(test_tickets_rotate),
		ST_TEST(test_resume),
		ST_TEST(test_curl),
		ST_TEST(test_s_server_upstream),
		ST_TEST(test_many_sessions),
		cmocka_unit_test_teardown(test_windows_root_store,
					  os_root_teardown),
	};
	int rc;

	/* SL_TEST_FILTER=test_resume* runs the matching tests only. */
	if (getenv("SL_TEST_FILTER") != NULL)
		cmocka_set_test_filter(getenv("SL_TEST_FILTER"));
	st_init();
	make_certs();
	rc = cmocka_run_group_tests_name(st_wine() ? "tls-wine" : "tls", tests,
					 NULL, NULL);
	free_certs();
	st_cleanup();
	return rc;
}
