#include "siesta/http/listen.h"

#include <sys/socket.h>

namespace siesta {

int listen_backlog() { return SOMAXCONN; }

void raise_listen_backlogs() {
  for (int fd = 3; fd < 64; ++fd) {
    int listening = 0;
    socklen_t len = sizeof listening;
    if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && listening) {
      ::listen(fd, listen_backlog());
    }
  }
}

}  // namespace siesta
