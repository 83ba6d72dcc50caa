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
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "support/support.h"
#include "support/tlsgen.h"

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		ST_TEST(test_check_good),
		ST_TEST(test_check_files),
		ST_TEST(test_check_warnings),
	};
	int rc;

	st_init();
	make_certs();
	rc = cmocka_run_group_tests_name(st_wine() ? "tls-wine" : "tls", tests,
					 NULL, NULL);
	free_certs();
	st_cleanup();
	return rc;
}
