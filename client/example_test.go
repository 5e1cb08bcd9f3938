package client_test

import (
	"context"
	"fmt"
	"log"

	"github.com/relaymesh/relaymesh/client"
)

func Example() {
	ctx := context.Background()
	c, err := client.Dial(ctx, "ws://127.0.0.1:8080/", client.Options{AppID: "my-app", ClientID: "alice"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	cid, err := c.CreateConversation(ctx, []string{"bob"}, "alice & bob", nil, true)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Send(ctx, cid, client.TextMessage("hello"), client.SendOptions{}); err != nil {
		log.Fatal(err)
	}
	for ev := range c.Events() {
		switch ev := ev.(type) {
		case client.Message:
			fmt.Println(ev.From, ev.Text)
		case client.Closed:
			fmt.Println("session ended:", ev.Code, ev.Reason)
		}
	}
}
