// The server layer's public entry point: the studio's JSON API over HTTP.
#pragma once
#include "doppel/server/api_server.hpp"  // ApiServer
