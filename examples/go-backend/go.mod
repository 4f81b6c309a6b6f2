module example.com/socket-server/go-backend

go 1.19
