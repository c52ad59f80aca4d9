/* Built against the installed package only, as C: find_package(madoguchi), madoguchi::c. */
#include <madoguchi.h>

#include <stdio.h>

int main(int argc, char **argv) {
  mdg_bot *bot = NULL;
  mdg_reply *reply = NULL;
  int rc;
  if (argc < 2) return 2;
  if ((rc = mdg_bot_open_file(&bot, argv[1], NULL)) != MDG_OK) {
    fprintf(stderr, "%s: %s\n", mdg_strerror(rc), mdg_error_last());
    return 1;
  }
  rc = mdg_bot_ask(&reply, bot, NULL, "送料はいくらですか", MDG_NTS);
  if (rc == MDG_OK) printf("consumer-c: answered %s (libmadoguchi %s)\n", mdg_reply_entry(reply), mdg_version());
  mdg_reply_free(reply);
  mdg_bot_free(bot);
  return rc == MDG_OK ? 0 : 1;
}
